"""What a monitoring run tells people: the printed summary, the alert line and the alert file.

An alert is written when a test of the report fails or targeting quality calls for retraining:
one log line (logger ``tpas.monitoring``, level WARNING, also printed on stderr) and a JSON file
``<data>/monitoring/alerts/<task>-<timestamp>.json`` that an operator can hook to mail or chat
(e.g. a cron job that mails any new file of that folder). The file holds the task, the model
version, the window, the failed tests, the most drifted columns in the words officials use
(English and Chinese label, the cause of poverty they speak to), the risk drift, targeting
quality and the retraining recommendation, and where the reports are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("tpas.monitoring")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f} %"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def summary_lines(s: dict[str, Any], top: int = 5) -> list[str]:
    """The short printed summary of one task's run (`s` is the run's summary dict)."""
    if s.get("status") == "no_data":
        return [f"{s['task']}: no score in the window {s['window']['since']} to {s['window']['until']}; nothing to "
                f"compare"]
    ref = s["reference"]
    ys = ref["years"]
    years = ("training year " + str(ys[0]) if len(ys) == 1 else f"training years {ys[0]}-{ys[-1]}") if ys \
        else "all training years"
    lines = [f"{s['task']} — {s['model']}: {s['rows_compared']:,} households (latest score each, of "
             f"{s['scores_read']:,} scores from {s['window']['since'][:16]} to {s['window']['until'][:16]}) against "
             f"{ref['rows']:,} reference rows ({years})"]
    for note in s.get("notes", []):
        lines.append(f"  note: {note}")
    d = s["drift"]
    share_test = next((t for t in s["tests"]["all"] if t["kind"] == "drift_share"), None)
    lines.append(f"  drifted columns: {d['drifted_count']} of {d['columns_compared']} "
                 f"({_pct(d['share_drifted'])}; test < {_pct(d['max_share'])}: "
                 f"{'passed' if share_test is None or share_test['status'] == 'SUCCESS' else 'FAILED'})")
    r = s["risk"]
    if r.get("vs_recent"):
        rr = r["vs_recent"]
        lines.append(f"  risk score: PSI {_num(rr['score'])} against the model's held-out scores of "
                     f"{r['recent_year']} (test < {_num(rr['threshold'], 2)}: "
                     f"{'FAILED' if rr['drifted'] else 'passed'}); against training: "
                     f"{_num((r.get('vs_reference') or {}).get('score'))} ({(r.get('vs_reference') or {}).get('method')})")
    elif r.get("vs_reference"):
        lines.append(f"  risk score: {_num(r['vs_reference']['score'])} ({r['vs_reference']['method']}) against "
                     f"training (no held-out scores logged with the model: no risk test)")
    if s["top_drifted"]:
        lines.append("  most drifted:")
        for i, c in enumerate(s["top_drifted"][:top], 1):
            lines.append(f"    {i}. {c['words']}: {_num(c['score'])} ({c['method']}, threshold {_num(c['threshold'], 2)})"
                         f"{'' if c['drifted'] else ' (within threshold)'}")
    p = s.get("since_previous")
    if p and p.get("top_changed"):
        changed = [c for c in p["top_changed"] if c["drifted"]][:top]
        lines.append(f"  since the previous scores of {p['households']:,} of these households (wave "
                     f"{p['previous_year']}): risk PSI {_num(p['risk_psi'])}; "
                     + ("most changed: " + "; ".join(f"{c['en']} {c['zh']} {_num(c['score'], 2)}" for c in changed)
                        if changed else "no column beyond its threshold"))
    t = s["tests"]
    lines.append(f"  tests: {t['passed']} passed, {len(t['failed'])} failed")
    for f in t["failed"][:8]:
        lines.append(f"    FAILED {f['name']}" + (f" — {f['words']}" if f.get("words") else ""))
    if len(t["failed"]) > 8:
        lines.append(f"    ... and {len(t['failed']) - 8} more (see the report)")
    q = s.get("targeting_quality")
    if q:
        p = q["pooled"]
        h = q["heldout"]
        lines.append(f"  targeting quality on {q['joined']:,} reported outcomes ({q['outcomes']:,} reported): "
                     f"AUC {_num(p.get('auc'))} (training {_num(h.get('auc'))}), exclusion error "
                     f"{_num(p.get('exclusion_error'))} ({_num(h.get('exclusion_error'))}), inclusion error "
                     f"{_num(p.get('inclusion_error'))} ({_num(h.get('inclusion_error'))}), ECE {_num(p.get('ece'))} "
                     f"({_num(h.get('ece'))}) at a {q['budget']:.0%} budget")
        if not q["judged"]:
            lines.append(f"    fewer than {q['min_outcomes']} outcomes: not judged yet")
    if s.get("retrain"):
        lines.append("  RETRAINING RECOMMENDED: " + "; ".join(q["reasons"]))
    lines.append(f"  report: {s['report']['html']} (JSON: {s['report']['json']})")
    if s.get("workspace"):
        lines.append(f"  history: `evidently ui --workspace {s['workspace']['path']}` (project {s['workspace']['project']})")
    if s.get("alert"):
        lines.append(f"  ALERT written to {s['alert']}")
    return lines


def alert_payload(s: dict[str, Any]) -> dict[str, Any]:
    """The alert file's content (a subset of the summary, for mail or chat)."""
    q = s.get("targeting_quality") or {}
    return {
        "alert": "tpas-monitoring", "task": s["task"], "model": s["model"], "model_version": s["model_version"],
        "created": s["created"], "window": s["window"], "rows_compared": s["rows_compared"],
        "failed_tests": s["tests"]["failed"],
        "top_drifted": s["top_drifted"],
        "changed_since_previous": (s.get("since_previous") or {}).get("top_changed"),
        "share_drifted": s["drift"]["share_drifted"],
        "risk_drift": s["risk"],
        "retrain": s.get("retrain", False),
        "retrain_reasons": q.get("reasons", []),
        "targeting_quality": q.get("pooled"),
        "report": s["report"],
        "message": alert_line(s),
    }


def alert_line(s: dict[str, Any]) -> str:
    """One line: what failed and which columns drifted most (officials' words)."""
    failed = s["tests"]["failed"]
    kinds = sorted({f["kind"] for f in failed})
    parts = [f"TPAS monitoring ALERT {s['task']} ({s['model']}): {len(failed)} failed test(s)"
             + (f" [{', '.join(kinds)}]" if kinds else "")]
    if s.get("retrain"):
        parts.append("retraining recommended")
    changed = [c for c in ((s.get("since_previous") or {}).get("top_changed") or []) if c["drifted"]][:3]
    if changed:
        parts.append("most changed since the previous scores: "
                     + "; ".join(f"{c['en']} {c['zh']} ({_num(c['score'], 2)})" for c in changed))
    top = [c for c in s["top_drifted"] if c["drifted"]][:3] or s["top_drifted"][:3]
    if top:
        parts.append("most drifted from training: "
                     + "; ".join(f"{c['en']} {c['zh']} ({_num(c['score'], 2)})" for c in top))
    return "; ".join(parts)


def write_alert(s: dict[str, Any], folder: Path, stamp: str) -> Path:
    """Write the alert file and log the alert line; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{s['task']}-{stamp}.json"
    path.write_text(json.dumps(alert_payload(s), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    log.warning("%s (alert file %s)", alert_line(s), path)
    return path
