#!/usr/bin/env python3
"""Write deploy/kubernetes/configmap.yaml: a profile as the ConfigMap ``factorysim-config`` that the
Deployment mounts at /etc/factorysim/config.yaml, the profile's text kept as it is (comments too).

    python3 tools/kubernetes_configmap.py                      # profiles/spaceship.yaml
    python3 tools/kubernetes_configmap.py profiles/enms.yaml   # another profile (or your own config)
    python3 tools/kubernetes_configmap.py --check              # exit 1 when the file is not the profile's

Run it again after changing the profile; tests/test_deploy_manifests.py checks that the two agree.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = ROOT / "profiles" / "spaceship.yaml"
DEFAULT_OUTPUT = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
NAME = "factorysim-config"
NAMESPACE = "azure-iot-operations"
KEY = "config.yaml"


def render(profile: Path) -> str:
    """The ConfigMap's YAML, the profile's text as a literal block."""
    text = profile.read_text(encoding="utf-8")
    if "\t" in text or any(line != line.rstrip() for line in text.splitlines()):
        raise SystemExit(f"{profile}: tabs or trailing blanks cannot be kept in a YAML literal block; remove them")
    try:
        shown = profile.resolve().relative_to(ROOT)
    except ValueError:
        shown = profile
    body = "".join(f"    {line}\n" if line else "\n" for line in text.rstrip("\n").splitlines())
    return (f"# Generated from {shown} by tools/kubernetes_configmap.py: change the profile and run the tool again.\n"
            "# The Deployment mounts it at /etc/factorysim/config.yaml (factorysim run --config ...).\n"
            "apiVersion: v1\n"
            "kind: ConfigMap\n"
            "metadata:\n"
            f"  name: {NAME}\n"
            f"  namespace: {NAMESPACE}\n"
            "  labels:\n"
            "    app.kubernetes.io/name: factorysim\n"
            "data:\n"
            f"  {KEY}: |\n"
            f"{body}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", nargs="?", type=Path, default=DEFAULT_PROFILE, help="config file to deploy")
    parser.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT, help="the ConfigMap file to write")
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 when the file differs")
    args = parser.parse_args(argv)
    wanted = render(args.profile)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
        if current != wanted:
            print(f"{args.output} is not {args.profile} as a ConfigMap: run python3 tools/kubernetes_configmap.py",
                  file=sys.stderr)
            return 1
        return 0
    args.output.write_text(wanted, encoding="utf-8")
    print(f"wrote {args.output} from {args.profile}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
