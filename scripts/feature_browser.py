"""The feature browser: a static site for a finished cross-layer analysis, opened from file://.

    # rebuild the browser of a run folder written by scripts/sae_evolution.py, with more prompts:
    python3 scripts/feature_browser.py --run runs/evolution --prompts my_prompts.txt
    # or run the whole analysis first (same options as scripts/sae_evolution.py):
    python3 scripts/feature_browser.py --out runs/evolution

The site (`<run>/browser/index.html`) has a prompt picker (the bundled prompts plus the
`--prompts` file, one prompt per line), one row per layer of the latents active on the prompt's
final token, edges by the chosen measure, colours by Louvain or Leiden community, a panel with a
clicked latent's top activating contexts (token highlighted) and strongest neighbours in the
layers before and after, and a search box. Everything is our own HTML/CSS/JavaScript (no CDN)
and every model-derived string is shown as text. A screenshot goes to `<run>/browser.png` when
Debian's chromium and chromedriver are installed (`bash .ci/peers/browser.sh`).
"""

from __future__ import annotations

import argparse


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--run", default=None, help="a finished run folder to rebuild the site of")
    p.add_argument("--prompts", default=None, help="extra prompts, one per line")
    p.add_argument("--no-screenshot", action="store_true", help="skip the screenshot")
    return p.parse_known_args(argv)


def main(argv=None) -> None:
    args, rest = parse_args(argv)
    if args.run is None:  # the whole analysis, which ends by writing the browser
        import sae_evolution  # the sibling script (python puts scripts/ on sys.path)

        extra = (["--prompts", args.prompts] if args.prompts else []) + (
            ["--no-screenshot"] if args.no_screenshot else []
        )
        sae_evolution.main(rest + extra)
        return
    if rest:
        raise SystemExit(f"with --run, unknown arguments: {rest}")
    import sae.evolution as evolution
    from sae.evolution.texts import read_prompts

    prompts = read_prompts(args.prompts) if args.prompts else None
    index, shot = evolution.rebuild_browser(
        args.run, prompts=prompts, screenshot=not args.no_screenshot
    )
    print(f"browser: {index}")
    if shot:
        print(f"screenshot: {shot}")


if __name__ == "__main__":
    import jaxlens.runs  # here, so that --help stays quick

    jaxlens.runs.run_script(main)
