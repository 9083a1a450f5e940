"""The current window: scores of a task in the inference store, as frames monitoring can compare.

Reads the store's ``scores`` table directly with only the columns monitoring needs (the feature
values as stored by the service, the risk, versions and times): `InferenceStore.scores_between`
would also fetch and parse every score's contributions and reason codes, several times the data.

The current frame has one row per household: its latest score in the window (the store's own
"latest" rule: ``scored_at``, then ``id``), so a household scored twice in the window counts once,
as it stands now. Feature values come from the stored ``features`` JSON (the service keeps only
finite values: a missing key is a missing value), one column per model feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tpas.errors import DataError

#: Columns read from the ``scores`` table.
WINDOW_COLUMNS = ("id", "household_pid", "region_code", "year", "risk", "eligible", "features", "model_name",
                  "model_version", "scored_at")


def parse_when(text: str | None, name: str, end: bool = False) -> datetime | None:
    """A command-line date or date-time (``2026-01-31`` or ``2026-01-31T08:00``) as an aware UTC datetime.

    A bare date means its midnight (UTC). Raises `DataError` naming the option when unreadable.
    """
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    try:
        if len(text) == 10:
            value = datetime.combine(date.fromisoformat(text), time(0, 0))
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{name}: expected a date like 2026-01-31 or a date-time like 2026-01-31T08:00, "
                        f"got {text!r}") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def resolve_window(since: str | None, until: str | None, window_days: int,
                   now: datetime | None = None) -> tuple[datetime, datetime]:
    """[since, until) in UTC: given dates, else the last `window_days` days up to now."""
    now = now or datetime.now(timezone.utc)
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    end = end or (now + timedelta(seconds=1))
    start = start or (end - timedelta(days=window_days))
    if start >= end:
        raise DataError(f"--since ({start:%Y-%m-%d %H:%M}) must be before --until ({end:%Y-%m-%d %H:%M})")
    return start, end


def read_scores(store, task: str, since: datetime | None, until: datetime | None,
                columns: tuple[str, ...] = WINDOW_COLUMNS) -> pd.DataFrame:
    """Scores of `task` with ``scored_at`` in [since, until), oldest first, as a frame of `columns`."""
    from serving.store import scores

    query = sa.select(*(scores.c[c] for c in columns)).where(scores.c.task == task)
    if since is not None:
        query = query.where(scores.c.scored_at >= since)
    if until is not None:
        query = query.where(scores.c.scored_at < until)
    query = query.order_by(scores.c.scored_at, scores.c.id)
    with store.engine.connect() as conn:
        result = conn.execute(query)
        frame = pd.DataFrame(result.fetchall(), columns=list(columns))
    if "scored_at" in frame and len(frame):
        frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    return frame


def latest_per_household(rows: pd.DataFrame) -> pd.DataFrame:
    """The latest row of each household (rows are ordered by scored_at, id)."""
    if rows.empty:
        return rows
    return rows.drop_duplicates("household_pid", keep="last").reset_index(drop=True)


def feature_frame(rows: pd.DataFrame, feature_names: list[str]) -> pd.DataFrame:
    """One float column per model feature from the stored ``features`` JSON (missing key -> NaN)."""
    n, index = len(rows), {name: j for j, name in enumerate(feature_names)}
    values = np.full((n, len(feature_names)), np.nan)
    for i, feats in enumerate(rows["features"].tolist()):
        if not feats:
            continue
        for key, v in feats.items():
            j = index.get(key)
            if j is not None and v is not None:
                values[i, j] = v
    return pd.DataFrame(values, columns=feature_names)


@dataclass
class Window:
    """The current rows of one task for one model version, and what was set aside."""

    task: str
    since: datetime
    until: datetime
    scores_read: int
    rows: pd.DataFrame                       # latest score per household of the monitored version
    model_name: str | None
    model_version: str | None
    versions: dict[str, int] = field(default_factory=dict)   # version -> scores in the window
    not_eligible: int = 0
    notes: list[str] = field(default_factory=list)
    #: Each current household's score just before its current one (any version; within the lookback).
    previous: pd.DataFrame | None = None

    @property
    def year(self) -> int | None:
        """The wave year most current rows describe."""
        years = self.rows["year"].dropna()
        return int(years.mode().iloc[0]) if len(years) else None


def previous_scores(history: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Each current household's latest score before its current one (rows ordered by scored_at, id)."""
    if history.empty or current.empty:
        return history.iloc[:0]
    cur = current.set_index("household_pid")
    rows = history[history["household_pid"].isin(cur.index)]
    cur_id = rows["household_pid"].map(cur["id"])
    cur_at = rows["household_pid"].map(cur["scored_at"])
    rows = rows[(rows["id"] != cur_id) & (rows["scored_at"] <= cur_at)]
    return latest_per_household(rows)


def load_window(store, task: str, since: datetime, until: datetime, champion: str | None,
                lookback_days: int = 0) -> Window:
    """The window's scores of `task`: the champion's rows if it has any, else the most used version's.

    Relapse rows of households not eligible for relapse (stored so they supersede older scores)
    are set aside: the model's reference holds eligible households only. With `lookback_days`, each
    current household's previous score (in the window or up to that many days before it) is kept too.
    """
    start = since - timedelta(days=lookback_days) if lookback_days else since
    history = read_scores(store, task, start, until)
    rows = history[history["scored_at"] >= since] if lookback_days and len(history) else history
    n = len(rows)
    notes: list[str] = []
    if rows.empty:
        return Window(task, since, until, 0, rows, None, None)
    versions = rows["model_version"].fillna("?").astype(str).value_counts().to_dict()
    if champion is not None and str(champion) in versions:
        version = str(champion)
    else:
        version = max(versions, key=versions.get)
        if champion is not None:
            notes.append(f"the champion (version {champion}) has no score in the window; monitoring version "
                         f"{version}, which gave {versions[version]:,} of them")
    if len(versions) > 1:
        others = ", ".join(f"{v} ({c:,})" for v, c in sorted(versions.items()) if v != version)
        notes.append(f"scores of several model versions in the window: using version {version} "
                     f"({versions[version]:,} scores), leaving out {others}")
    rows = rows[rows["model_version"].fillna("?").astype(str) == version]
    name = rows["model_name"].dropna().iloc[0] if rows["model_name"].notna().any() else None
    rows = latest_per_household(rows)
    not_eligible = 0
    if task == "relapse":
        keep = rows["eligible"].astype("boolean").fillna(True).to_numpy(bool)
        not_eligible = int((~keep).sum())
        rows = rows[keep].reset_index(drop=True)
        if not_eligible:
            notes.append(f"{not_eligible:,} households not eligible for relapse (their latest score says so) "
                         f"left out, as the model's reference holds eligible households only")
    previous = previous_scores(history, rows) if lookback_days else None
    return Window(task, since, until, n, rows, name, version, versions, not_eligible, notes, previous)
