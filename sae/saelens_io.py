"""SAEs on disk in SAELens's format, both directions.

A folder holds `cfg.json` and `sae_weights.safetensors`. The weights are `W_enc [d_in, d_sae]`,
`W_dec [d_sae, d_in]`, `b_enc [d_sae]`, `b_dec [d_in]` and, for JumpReLU, `threshold [d_sae]`
(older files: `log_threshold`). SAELens's JumpReLU computes `relu(pre) * (pre > threshold)`, ours
too: our JumpReLU params hold `log_threshold` (trained, so the threshold stays positive), written
as `threshold = exp(log_threshold)` (the very values `sae.encode` compares against) and read
back as its log; a file's threshold <= 0 acts as 0 in SAELens, and is read as the smallest
positive float32 (the same latents up to activations below 1e-38).

`cfg.json` is SAELens 6's inference config: `d_in`, `d_sae`, `architecture` (`standard`,
`topk`, `jumprelu`), `k` for TopK, `apply_b_dec_to_input`, `normalize_activations`, `dtype`, and
`metadata` with `sae_lens_version` (we write "6.0.0").

Our architectures map as relu -> standard, topk -> topk, jumprelu -> jumprelu, and batchtopk ->
jumprelu with its learned threshold (what BatchTopK is at inference). Our own `SAEConfig` rides
along under the key `jaxlens_config` (SAELens ignores keys it does not know), so a file we wrote
comes back with its training config; a file SAELens wrote comes back with a config built from
its fields.

Loading folds SAELens options we do not model into the weights instead of ignoring them:
`apply_b_dec_to_input: false` moves `b_dec @ W_enc` into `b_enc`, and TopK's
`rescale_acts_by_decoder_norm: true` scales `W_enc`, `b_enc` by the decoder row norms and
`W_dec` by their inverse. A normalisation we cannot fold (it needs a scale the file does not
hold), an unknown architecture, a missing or corrupt file, or a tensor of the wrong shape
raises an error naming it. Only safetensors is read.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sae.config import SAEConfig, SAEConfigError
from sae.model import Params, param_shapes, threshold

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"

_TINY = np.finfo(np.float32).tiny
_TO_SAELENS = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}
_FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}


class SAELensFileNotFoundError(FileNotFoundError):
    """An SAELens folder, its cfg.json or its weights file is missing."""


class SAELensFormatError(ValueError):
    """An SAELens folder's config or weights are not what the format says."""


def save_saelens(
    path: str | os.PathLike,
    config: SAEConfig,
    params: Params,
    *,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write `params` (raw activation space, as `fit` returns) as an SAELens folder.

    Args:
        path: folder to write (created if missing).
        config: the SAE's config.
        params: its params.
        metadata: extra SAELens metadata (`model_name`, `hook_name`, `context_size`, ...).

    Returns:
        The folder.
    """
    from safetensors.numpy import save_file

    _check_params(params, config, where="params")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    names = ("W_enc", "b_enc", "W_dec", "b_dec")
    tensors = {name: np.asarray(params[name], np.float32) for name in names}
    if config.has_threshold:
        tensors["threshold"] = np.asarray(threshold(params, config), np.float32)
    tensors = {name: np.ascontiguousarray(value) for name, value in tensors.items()}
    save_file(tensors, str(path / WEIGHTS_FILENAME))
    cfg: dict[str, Any] = {
        "d_in": config.d_in,
        "d_sae": config.d_sae,
        "architecture": _TO_SAELENS[config.architecture],
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
            **(metadata or {}),
        },
        "jaxlens_config": dataclasses.asdict(config),
    }
    if config.architecture == "topk":
        cfg["k"] = config.k
        cfg["rescale_acts_by_decoder_norm"] = False
    (path / CFG_FILENAME).write_text(json.dumps(cfg, indent=2))
    return path


def _check_params(params: Params, config: SAEConfig, *, where: str) -> None:
    for name, shape in param_shapes(config).items():
        if name not in params:
            raise SAELensFormatError(f"{where} has no tensor {name!r} (expected shape {shape})")
        got = tuple(np.shape(params[name]))
        if got != shape:
            raise SAELensFormatError(f"{where}: tensor {name!r} has shape {got}, expected {shape}")


def _read_cfg(path: Path) -> dict[str, Any]:
    cfg_path = path / CFG_FILENAME
    if not cfg_path.is_file():
        raise SAELensFileNotFoundError(f"{cfg_path} does not exist (not an SAELens folder)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SAELensFormatError(f"{cfg_path} is not valid JSON ({err})") from None
    if not isinstance(cfg, dict):
        raise SAELensFormatError(f"{cfg_path} must hold a JSON object")
    return cfg


def _config_from_saelens(cfg: dict[str, Any], where: Path) -> SAEConfig:
    ours = cfg.get("jaxlens_config")
    if isinstance(ours, dict):
        try:
            return SAEConfig(**ours)
        except (TypeError, SAEConfigError) as err:
            raise SAELensFormatError(f"{where}: jaxlens_config is invalid ({err})") from None
    arch = cfg.get("architecture")
    kwargs = cfg.get("activation_fn_kwargs") or {}
    if arch is None:  # files from before SAELens 6
        arch = "topk" if cfg.get("activation_fn") == "topk" else "standard"
    if arch not in _FROM_SAELENS:
        raise SAELensFormatError(
            f"{where}: architecture {arch!r} is not supported; expected one of "
            f"{sorted(_FROM_SAELENS)}"
        )
    try:
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    except (KeyError, TypeError, ValueError):
        raise SAELensFormatError(f"{where}: cfg.json needs integer d_in and d_sae") from None
    k = cfg.get("k", kwargs.get("k")) if arch == "topk" else None
    try:
        return SAEConfig(
            d_in=d_in,
            d_sae=d_sae,
            architecture=_FROM_SAELENS[arch],
            k=None if k is None else int(k),
        )
    except SAEConfigError as err:
        raise SAELensFormatError(f"{where}: {err}") from None


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    weights_path = path / WEIGHTS_FILENAME
    if not weights_path.is_file():
        raise SAELensFileNotFoundError(f"{weights_path} does not exist")
    try:
        return load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise SAELensFormatError(
            f"{weights_path} is not a readable safetensors file ({err})"
        ) from None
    except TypeError:  # bfloat16 and other dtypes numpy lacks: read through torch if present
        from safetensors.torch import load_file as load_torch

        return {k: v.float().numpy() for k, v in load_torch(str(weights_path)).items()}


def load_saelens(path: str | os.PathLike) -> tuple[SAEConfig, Params]:
    """Read an SAELens folder (ours or SAELens's) as `(config, params)` in float32."""
    import jax.numpy as jnp

    path = Path(path)
    if not path.is_dir():
        raise SAELensFileNotFoundError(f"SAE folder {path} does not exist")
    cfg = _read_cfg(path)
    config = _config_from_saelens(cfg, path)
    raw = _read_weights(path)
    if config.architecture == "jumprelu" and "log_threshold" not in raw and "threshold" in raw:
        positive = np.maximum(np.asarray(raw.pop("threshold"), np.float32), _TINY)
        raw["log_threshold"] = np.log(positive.astype(np.float64)).astype(np.float32)
    elif config.architecture == "batchtopk" and "threshold" not in raw and "log_threshold" in raw:
        raw["threshold"] = np.exp(raw.pop("log_threshold"))
    params = {
        name: np.asarray(raw[name], np.float32) for name in param_shapes(config) if name in raw
    }
    _check_params(params, config, where=str(path / WEIGHTS_FILENAME))
    for name, value in params.items():
        if not np.all(np.isfinite(value)):
            raise SAELensFormatError(f"{path / WEIGHTS_FILENAME}: tensor {name!r} has NaN/inf")
    norm = cfg.get("normalize_activations", "none")
    if norm not in ("none", None, False):
        raise SAELensFormatError(
            f"{path}: normalize_activations={norm!r} needs a scale the folder does not hold; "
            "fold it into the weights first (SAELens: fold_activation_norm_scaling_factor)"
        )
    if cfg.get("apply_b_dec_to_input", True) is False:
        params["b_enc"] = params["b_enc"] + params["b_dec"] @ params["W_enc"]
    if config.architecture == "topk" and cfg.get("rescale_acts_by_decoder_norm", False):
        norms = np.linalg.norm(params["W_dec"], axis=-1)
        params["W_enc"] = params["W_enc"] * norms
        params["b_enc"] = params["b_enc"] * norms
        params["W_dec"] = params["W_dec"] / np.maximum(norms, 1e-12)[:, None]
    return config, {name: jnp.asarray(value) for name, value in params.items()}
