r"""How SAE features evolve across layers: SAEs on every layer, statistics, lineage, graph, browser.

    # the built-in model, small SAEs trained here:
    python3 scripts/sae_evolution.py --out runs/evolution
    # the paper: GPT-2 small, the gpt2-small-res-jb SAELens folders (one per layer, in order),
    # a Pile slice, the paper's settings (EvolutionConfig.paper()):
    python3 scripts/sae_evolution.py --paper --model path/to/gpt2 --text pile_sample.txt \
        --saes DIR/blocks.{0..11}.hook_resid_pre --out runs/evolution_gpt2
    # sharded: tokens over data, latents over tensor
    python3 scripts/sae_evolution.py --mesh data=2,tensor=4 --out runs/evolution_mesh

Writes a run folder: SAE metrics, the top-k neighbour lists under every measure (`stats/`,
resumable: rerun the same command after a crash), turnover / AND-OR / unrepresented tables,
the feature graph (`graph.json`, node-link) with Louvain and Leiden communities, the Sankey-style
figure, the feature browser (`browser/index.html`, opens from file://) and its screenshot, and
`report.md`. Prints the headline figures: SAE explained variance per layer and the turnover per
layer pair.
"""

from __future__ import annotations

import argparse
import json

import jaxlens
import jaxlens.runs
import sae.evolution as evolution
from sae.evolution.texts import read_prompts


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=None, help="HF checkpoint dir (default: the built-in model)")
    p.add_argument("--saes", nargs="+", default=None, help="SAELens folders, one per layer")
    p.add_argument("--text", default=None, help="a .txt corpus (documents split by blank lines)")
    p.add_argument("--prompts", default=None, help="extra browser prompts, one per line")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true", help="full sizes (default: quick sizes)")
    size.add_argument("--paper", action="store_true", help="the paper's settings and sizes")
    p.add_argument("--block", type=int, default=None, help="earlier-side latents per block")
    p.add_argument("--threshold", type=float, default=None,
                   help="active = act > threshold * the latent's max (0: > 0; default: "
                   "the preset's, 0 or the paper's 0.2)")  # fmt: skip
    p.add_argument("--windows", type=int, default=None, help="token windows (default: preset's)")
    p.add_argument("--sparse-cap", type=int, default=None,
                   help="nonzero latents per token, sparse update (TopK SAEs: k)")  # fmt: skip
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=2,fsdp=1,tensor=4")
    p.add_argument("--no-screenshot", action="store_true", help="skip the browser screenshot")
    p.add_argument("--out", required=True, help="run folder")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = evolution.EvolutionConfig
    preset = cfg.paper if args.paper else cfg.full if args.full else cfg.quick
    given = {"threshold": args.threshold, "block": args.block, "n_windows": args.windows}
    overrides = {k: v for k, v in given.items() if v is not None}
    overrides["sparse_cap"] = args.sparse_cap
    prompts = read_prompts(args.prompts) if args.prompts else None
    head = evolution.run_study(
        args.model, args.out, quick=not (args.full or args.paper), saes=args.saes,
        mesh=jaxlens.sharding.parse_mesh(args.mesh),
        text_file=args.text, prompts=prompts, config=preset(**overrides),
        screenshot=not args.no_screenshot,
    )  # fmt: skip
    print(json.dumps({"explained_variance": head["explained_variance"]}))
    for row in head["turnover"]:
        print(json.dumps(row))
    print(f"browser: {head['browser']}")


if __name__ == "__main__":
    jaxlens.runs.run_script(main)
