"""The SWE miner and validator on the real-repository truth set, without the rest of the histories.

``swe_real_repos.py`` runs the whole flow (every linked commit of 7 histories: hours). This one
measures the two rates the truth can speak for, in well under an hour:

1. **found**: mine each repository's history (git only, no export, no GitHub API; the same
   ``mine_repo`` the flow runs) and check which truth fixes become candidates, with how the issue
   link was found;
2. **validated with the right FAIL_TO_PASS**: validate only the found truth candidates in Docker
   (``stages.swe.validate.validate_all``: environment search, pre run, 3 post runs) and compare
   FAIL_TO_PASS with the hand-verified one; also the install rate of those candidates and the wall
   time per instance.

    .venv/bin/python benchmarks/swe_real_repos.py --rebuild-clones .bench/swe-real/repos --dry-run
    .venv/bin/python benchmarks/swe_real_truth_only.py --clones .bench/swe-real/repos [--mine-only]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TRUTH = BENCH / "data" / "swe_real_truth.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clones", required=True, help="folder of the clones (swe_real_repos.py --rebuild-clones)")
    ap.add_argument("--work", default=".bench/swe-real/truth-only", help="validation journal and logs")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mine-only", action="store_true", help="only the found rate (no Docker)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--repo", action="append", default=[],
                    help="only this truth repository (owner/name; repeatable): a quick check, not the figure")
    args = ap.parse_args()

    from skycurate.connectors.git_repos import resolve_repo
    from skycurate.schemas.swe import MiningConfig, ValidationConfig
    from skycurate.stages.swe.mining import mine_repo

    data = json.loads(TRUTH.read_text())
    truth = [t for t in data["instances"] if not args.repo or t["repo"] in args.repo]
    folders = {r["repo"]: Path(args.clones) / r["repo"].split("/")[1] for r in data["repos"]
               if not args.repo or r["repo"] in args.repo}
    found, t0 = [], time.perf_counter()
    for repo, folder in folders.items():
        res = mine_repo(resolve_repo(folder), MiningConfig())
        by_fix = {c["fix_commit"]: c for c in res.candidates}
        for t in (t for t in truth if t["repo"] == repo):
            c = by_fix.get(t["fix_commit"])
            print(f"{'FOUND ' if c else 'MISSED'} {repo:30} {t['fix_commit'][:10]} truth link {t['link']:13} "
                  f"{'-> ' + str(c['issue_link']) if c else ''}")
            if c:
                found.append((t, c))
    mine_s = time.perf_counter() - t0
    out = {"truth": len(truth), "found": len(found), "found_pct": round(100 * len(found) / len(truth), 1),
           "mine_seconds": round(mine_s, 1)}
    print(f"\nfound {len(found)}/{len(truth)} = {out['found_pct']}% (mining {mine_s:.0f} s)")
    if not args.mine_only:
        from skycurate.stages.swe.validate import validate_all

        cfg = ValidationConfig(workers=args.workers)
        t0 = time.perf_counter()
        def progress(n: int, total: int, o: dict) -> None:
            r = o["row"]
            print(f"  [{n}/{total}] {r['instance_id']}: "
                  f"{'valid' if o['kind'] == 'instance' else r['stage'] + ':' + r['reason']} "
                  f"({o.get('seconds', 0):.0f} s)", flush=True)

        outcomes = validate_all([c for _, c in found], cfg, Path(args.work), progress=progress)
        val_s = time.perf_counter() - t0
        rows = []
        for (t, _), o in zip(found, outcomes, strict=True):
            row = o["row"]
            if o["kind"] == "instance":
                got, want = set(row["FAIL_TO_PASS"]), set(t["fail_to_pass"])
                verdict = "equal" if got == want else "superset" if got > want else "differs"
                rows.append(("VALID", verdict, row.get("env_attempts") or []))
            else:
                rows.append(("REJECTED", f"{row['stage']}:{row['reason']}", (row["detail"] or "")[:160]))
            print(f"{rows[-1][0]:8} {t['repo']:30} {t['fix_commit'][:10]} {rows[-1][1]}  {rows[-1][2]}")
        revalidated = revalidate([o["row"] for o in outcomes if o["kind"] == "instance"], cfg,
                                 Path(args.work) / "revalidate")
        valid = [r for r in rows if r[0] == "VALID"]
        right = [r for r in valid if r[1] in ("equal", "superset")]
        installed = [r for r in rows if not r[1].startswith(("recipe:", "install:"))]
        out.update(revalidated=sum(revalidated.values()), revalidated_of=len(revalidated),
                   not_revalidated=sorted(k for k, ok in revalidated.items() if not ok))
        print(f"\nre-validated from rebuilt images: {out['revalidated']}/{len(revalidated)}"
              + (f" (not: {', '.join(out['not_revalidated'])})" if out["not_revalidated"] else ""))
        out.update(validated=len(valid), right_f2p=len(right),
                   validated_pct=round(100 * len(right) / len(truth), 1),
                   install_pct=round(100 * len(installed) / max(1, len(rows)), 1),
                   reasons=dict(Counter(r[1] for r in rows if r[0] == "REJECTED")),
                   seconds_per_instance=round(val_s / max(1, len(rows)), 1))
        print(f"\nvalidated with the truth's FAIL_TO_PASS: {len(right)}/{len(truth)} = {out['validated_pct']}%; "
              f"install rate {out['install_pct']}%; {out['seconds_per_instance']} s per candidate")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


def revalidate(instances: list[dict], cfg, work: Path) -> dict[str, bool]:
    """A second, independent run of every validated instance, as SWE-bench's harness does for its
    own: its image is rebuilt from the recorded recipe (the first run's images are gone), then the
    gold patch must resolve it (every FAIL_TO_PASS and PASS_TO_PASS passes) and the empty patch must
    leave every FAIL_TO_PASS test failing."""
    from skycurate.sandbox.images import remove_image
    from skycurate.stages.swe.patches import check_patch

    out = {}
    for inst in instances:
        gold = check_patch({"patch_id": "gold", "instance_id": inst["instance_id"], "patch": inst["patch"]},
                           inst, cfg, work / inst["instance_id"])
        empty = check_patch({"patch_id": "empty", "instance_id": inst["instance_id"], "patch": ""},
                            inst, cfg, work / inst["instance_id"])
        remove_image(inst["image_tag"])
        out[inst["instance_id"]] = bool(gold["resolved"]) and empty["f2p_passed"] == 0
        print(f"  re-validate {inst['instance_id']}: gold {'resolved' if gold['resolved'] else gold['reason']}, "
              f"empty patch passes {empty['f2p_passed']}/{empty['f2p_total']} FAIL_TO_PASS", flush=True)
    return out


if __name__ == "__main__":
    main()
