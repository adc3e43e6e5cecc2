"""jaxlens: a pure-functional Flax port of the Llama family (and GPT-2) for interpretability.

A model is `(config, params)`. `forward` and `generate` are pure functions of the params with
activation capture (`Capture`) and interventions (`steer`, `ablate`, `patch`, `splice`) as
pytree arguments, so new values never recompile.
"""

from jaxlens.config import Llama3RopeScaling, ModelConfig, UnsupportedConfigError
from jaxlens.dtypes import DtypeError, canonical_dtype
from jaxlens.heads import head_ablate, head_patch, offset
from jaxlens.hooks import (
    HEAD_SITES,
    INNER_SITES,
    LAYER_SITES,
    SITES,
    Capture,
    HookSpecError,
    Interventions,
    ablate,
    patch,
    splice,
    steer,
)
from jaxlens.inputs import InputError
from jaxlens.layers import KVCache
from jaxlens.logprobs import next_token_loss, target_logprobs, token_logprobs
from jaxlens.model import ForwardOutput, forward, model_apply
from jaxlens.params import (
    ParamsError,
    check_params,
    count_params,
    init_params,
    logical_axes,
    param_shapes,
    param_shardings,
    shard_params,
)

__all__ = [
    "HEAD_SITES",
    "INNER_SITES",
    "LAYER_SITES",
    "SITES",
    "Capture",
    "DtypeError",
    "ForwardOutput",
    "HookSpecError",
    "InputError",
    "Interventions",
    "KVCache",
    "Llama3RopeScaling",
    "ModelConfig",
    "ParamsError",
    "UnsupportedConfigError",
    "ablate",
    "canonical_dtype",
    "check_params",
    "count_params",
    "forward",
    "head_ablate",
    "head_patch",
    "init_params",
    "logical_axes",
    "model_apply",
    "next_token_loss",
    "offset",
    "param_shapes",
    "param_shardings",
    "patch",
    "shard_params",
    "splice",
    "steer",
    "target_logprobs",
    "token_logprobs",
]

from jaxlens import distributed, sharding  # noqa: E402
from jaxlens.hf import (  # noqa: E402
    apply_chat_template,
    left_pad,
    load_hf,
    load_tokenizer,
    save_hf,
    stop_ids,
)

__all__ += [
    "apply_chat_template",
    "distributed",
    "left_pad",
    "load_hf",
    "load_tokenizer",
    "save_hf",
    "sharding",
    "stop_ids",
]

from jaxlens import prompts  # noqa: E402
from jaxlens.generate import GenerateOutput, generate  # noqa: E402
from jaxlens.sampling import Sampling, SamplingError  # noqa: E402

__all__ += ["GenerateOutput", "Sampling", "SamplingError", "generate", "prompts"]

from jaxlens.builtin import BUILTIN_MODEL  # noqa: E402
from jaxlens.loaded import LoadedModel, load_model  # noqa: E402

__all__ += ["BUILTIN_MODEL", "LoadedModel", "load_model"]

from jaxlens import heads, lens, patching  # noqa: E402
from jaxlens.lens import layer_predictions, logit_lens  # noqa: E402
from jaxlens.patching import attribution_patch, patch_sweep, path_patch  # noqa: E402

__all__ += [
    "attribution_patch",
    "heads",
    "layer_predictions",
    "lens",
    "logit_lens",
    "patch_sweep",
    "patching",
    "path_patch",
]
