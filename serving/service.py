"""The TPAS-ML scoring service (BentoML 1.4).

Start it with ``tpas serve`` (127.0.0.1:3000) or ``bentoml serve serving.service:TPAS``;
``bentoml build`` (bentofile.yaml) makes a Bento. At start it loads the champion of each task
from the MLflow registry (or the versions pinned in ``serving/pinned_models.json`` when a
Bento was built with them) and refuses to start when a task has none.

Endpoints (all documented in ``/docs.json`` with a working example):

- ``POST /score`` (registry keys): 1-1,000 households -> risks, scores, tiers, reasons; invalid
  records get their own error entries; 422 when none is valid.
- ``POST /outcomes`` (registry keys): verified outcomes for monitoring.
- ``GET /risk-list`` (official / analyst keys): ranked households of a region and below, JSON,
  CSV or Excel.
- ``GET /households/{id}/explanation`` (official / analyst keys): a household's latest scores
  with every contribution.
- ``GET /review-lists`` (official / analyst keys): the enrolment, exit and relapse-watch review lists of
  the latest `tpas roster review` run covering a region (recommendations; people decide).
- ``GET /officials``: the officials' web page.
- ``/healthz``, ``/readyz``, ``/metrics`` (Prometheus) from BentoML, with the service's own
  counters (households scored, records rejected, model versions served).

Access: ``Authorization: Bearer KEY`` (``tpas keys create``); 401 without a valid key, 403 for
a key outside its role or region. Personal data and raw household ids are never stored or
logged: the inference store holds a keyed-hash pseudonym.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import msgspec
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import Field

from serving.schemas import (MAX_HOUSEHOLDS, LenientHousehold, Outcome, OutcomesResponse, ScoreResponse, error_path,
                             example)

log = logging.getLogger("tpas.serving")

PINNED_FILE = Path(__file__).with_name("pinned_models.json")
WEB_DIR = Path(__file__).with_name("web")

#: Who may call what: path (prefix) -> (method, roles).
PUBLIC_PREFIXES = ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json", "/static_content",
                   "/assets", "/officials", "/favicon")
ROUTE_ROLES: list[tuple[str, str, set[str]]] = [
    ("POST", "/score", {"registry"}),
    ("POST", "/outcomes", {"registry"}),
    ("GET", "/risk-list", {"official", "analyst"}),
    ("GET", "/households/", {"official", "analyst"}),
    ("GET", "/review-lists", {"official", "analyst"}),
    ("GET", "/me", {"official", "analyst", "registry"}),
    ("GET", "/villages", {"official", "analyst"}),
]

_state: dict[str, Any] = {}  # the service instance's store, shared with the auth middleware


# -- metrics (Prometheus, served on /metrics next to BentoML's request counters and latency histogram) -------
HOUSEHOLDS_SCORED = bentoml.metrics.Counter(name="tpas_households_scored", documentation="Households scored, by task.",
                                            labelnames=["task"])
RECORDS_REJECTED = bentoml.metrics.Counter(name="tpas_records_rejected",
                                           documentation="Household records rejected by validation.")
RECORDS_SPOOLED = bentoml.metrics.Counter(name="tpas_records_spooled",
                                          documentation="Score/outcome rows spooled to disk while the database was down.")
MODEL_INFO = bentoml.metrics.Gauge(name="tpas_model_version_served", documentation="Model versions served (1 = served).",
                                   labelnames=["task", "model", "version"])
SCORE_SECONDS = bentoml.metrics.Histogram(name="tpas_score_seconds", documentation="Time to score one /score request.",
                                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))


# -- access control -------------------------------------------------------------------------------------------------
class AuthMiddleware:
    """Checks ``Authorization: Bearer KEY`` against the hashed keys; 401 / 403 before any handler runs.

    The verified key is put in ``scope['state']['api_key']`` for region checks in the handlers.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", "/"), scope.get("method", "GET")
        rule = next((r for r in ROUTE_ROLES if path == r[1] or (r[1].endswith("/") and path.startswith(r[1]))), None)
        if rule is None:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not token:
            return await _deny(send, 401, "missing API key: send 'Authorization: Bearer KEY' (create one with "
                                          "`tpas keys create`)")
        from serving.auth import verify_key
        from serving.store import StoreUnavailable

        store = _state.get("store")
        try:
            key = verify_key(store, token) if store is not None else None
        except StoreUnavailable:  # a key not seen in the last hour cannot be checked while the database is down
            return await _deny(send, 503, "the key store is unreachable; retry shortly")
        if key is None:
            return await _deny(send, 401, "invalid or revoked API key")
        if key.role not in rule[2]:
            return await _deny(send, 403, f"a '{key.role}' key may not call {method} {rule[1].rstrip('/')}")
        scope.setdefault("state", {})["api_key"] = key
        return await self.app(scope, receive, send)


async def _deny(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="tpas"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _key(request: Request):
    key = getattr(request.state, "api_key", None)
    if key is None:  # the middleware guards these routes; this is a second lock
        raise HTTPException(401, "missing API key")
    return key


def _check_region(key, region: str) -> None:
    from serving.auth import region_allowed

    if not region_allowed(key, region):
        raise HTTPException(403, f"this key may read region {key.region_code} and below, not {region or 'all regions'}")


web = FastAPI(title="TPAS-ML lists", docs_url=None, redoc_url=None, openapi_url=None)


@web.exception_handler(Exception)
async def _database_down(request: Request, exc: Exception):
    """A read that fails because the database is unreachable answers 503 (retry), not 500."""
    from serving.store import StoreUnavailable, is_outage

    if isinstance(exc, StoreUnavailable) or is_outage(exc):
        return JSONResponse({"error": "the inference store is unreachable; retry shortly"}, status_code=503,
                            headers={"retry-after": "5"})
    log.error("unexpected error on %s: %s", request.url.path, type(exc).__name__)
    return JSONResponse({"error": "unexpected error; see the service log"}, status_code=500)

_score_example = example("score_request")["households"]
_outcome_example = [{"household_id": _score_example[0]["household_id"], "task": "relapse",
                     "outcome": "not_relapsed", "observed_on": "2026-03-31"}]


@bentoml.asgi_app(web, path="/")
@bentoml.service(name="tpas", traffic={"timeout": 120, "max_concurrency": 64}, workers=1,
                 http={"cors": {"enabled": False}})
class TPAS:
    """TPAS-ML: poverty-risk and relapse scores with reasons, for registry systems and officials."""

    def __init__(self) -> None:
        from serving.scoring import Scorer, load_champions
        from serving.store import InferenceStore
        from tpas.config import get_params
        from tpas.settings import get_settings

        settings = get_settings()
        self.params = get_params(str(settings.params_path))
        pinned = json.loads(PINNED_FILE.read_text()) if PINNED_FILE.exists() else None
        self.models = load_champions(pinned=pinned)  # raises NoChampion naming the command to run
        self.scorer = Scorer(self.models, top_k=self.params.train.top_k_reasons,
                             cache_rows=settings.contribution_cache_rows)
        self.store = InferenceStore()
        self.store.migrate()
        self.store.start_flusher(interval_s=5.0)
        _state["store"] = self.store
        for task, lm in self.models.items():
            MODEL_INFO.labels(task=task, model=lm.name, version=lm.version).set(1)
        settle_heap()
        log.info("serving %s; inference store %s", ", ".join(lm.label for lm in self.models.values()),
                 self.store.url_safe if hasattr(self.store, "url_safe") else "ready")

    def __is_ready__(self) -> bool:
        return bool(self.models)

    # -- registry systems -----------------------------------------------------------------------------------
    @bentoml.api(route="/score")
    def score(
        self,
        households: Annotated[list[LenientHousehold], Field(
            description=f"1 to {MAX_HOUSEHOLDS} household records (canonical registry schema). Invalid records are "
                        "reported in `errors` and the valid ones scored.", examples=[_score_example])],
        full_contributions: Annotated[bool, Field(description="Also return every feature's contribution.")] = False,
        ctx: bentoml.Context = None,
    ) -> ScoreResponse:
        """Score households: poverty risk, relapse risk (eligible households), 0-100 score, tier, top reasons.

        Each invalid record gets an error entry with the field path and the reason; the request
        answers 422 only when no record is valid. Scores are recorded in the inference store
        (spooled to disk if the database is down, written when it is back).
        """
        t0 = time.perf_counter()
        if not 1 <= len(households) <= MAX_HOUSEHOLDS:
            ctx.response.status_code = 422
            return score_response(0, len(households), [], [{
                "index": 0, "household_id": None, "field": "households",
                "reason": f"send 1 to {MAX_HOUSEHOLDS} households, got {len(households)}"}], self.scorer.versions)
        outcome = self.scorer.score(households, full_contributions=full_contributions)
        if outcome.store_rows:
            res = self.store.record_scores(outcome.store_rows)
            if res.spooled:
                RECORDS_SPOOLED.inc(res.spooled)
        for task in self.models:
            n = sum(1 for r in outcome.results if r.get(task) is not None)
            if n:
                HOUSEHOLDS_SCORED.labels(task=task).inc(n)
        if outcome.rejected:
            RECORDS_REJECTED.inc(outcome.rejected)
        if not outcome.results:
            ctx.response.status_code = 422
        response = score_response(outcome.scored, outcome.rejected, outcome.results, outcome.errors,
                                  self.scorer.versions)
        SCORE_SECONDS.observe(time.perf_counter() - t0)
        return response

    @bentoml.api(route="/outcomes")
    def outcomes(
        self,
        outcomes: Annotated[list[dict[str, Any]], Field(
            min_length=1, max_length=10_000, examples=[_outcome_example],
            description="Verified outcomes: household_id, task (poverty|relapse), outcome "
                        "(poor|not_poor|relapsed|not_relapsed), observed_on (date).",
            json_schema_extra={"items": Outcome.model_json_schema()})],
        ctx: bentoml.Context = None,
    ) -> OutcomesResponse:
        """Report verified outcomes (found poor or not, relapsed or not) for monitoring targeting quality."""
        from datetime import datetime, timezone

        from pydantic import ValidationError

        from serving.pseudonym import pseudonymize
        from serving.store import new_record_id

        key = getattr(ctx.request.state, "api_key", None)
        rows, errors = [], []
        allowed = {"poverty": {"poor", "not_poor"}, "relapse": {"relapsed", "not_relapsed"}}
        now = datetime.now(timezone.utc)
        for i, raw in enumerate(outcomes):
            try:
                o = Outcome.model_validate(raw)
            except ValidationError as exc:
                hid = raw.get("household_id") if isinstance(raw, dict) else None
                errors += [{"index": i, "household_id": str(hid) if hid is not None else None,
                            "field": error_path(f"outcomes[{i}]", e["loc"]), "reason": e["msg"]}
                           for e in exc.errors(include_url=False)]
                continue
            if o.outcome not in allowed[o.task]:
                errors.append({"index": i, "household_id": o.household_id, "field": f"outcomes[{i}].outcome",
                               "reason": f"a {o.task} outcome is one of {', '.join(sorted(allowed[o.task]))}"})
                continue
            rows.append({"record_id": new_record_id(), "household_pid": pseudonymize(o.household_id),
                         "task": o.task, "outcome": o.outcome, "observed_on": o.observed_on, "reported_at": now,
                         "reporter_key_id": getattr(key, "key_id", None)})
        spooled = 0
        if rows:
            res = self.store.record_outcomes(rows)
            spooled = res.spooled
            if spooled:
                RECORDS_SPOOLED.inc(spooled)
        else:
            ctx.response.status_code = 422
        return OutcomesResponse(accepted=len(rows), rejected=len({e["index"] for e in errors}), errors=errors,
                                spooled=spooled)

    # -- officials and analysts -----------------------------------------------------------------------------
    @web.get("/risk-list", tags=["Officials"], summary="Ranked, explained risk list of a region and its sub-regions")
    def risk_list(
        self,
        request: Request,
        region: Annotated[str, Query(pattern=r"^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$",
                                     description="Region code: province (2 digits), city (4), county (6), "
                                                 "township (9) or village (12).", examples=["430121"])],
        task: Annotated[Literal["poverty", "relapse"], Query()] = "poverty",
        tier: Annotated[str | None, Query(description="Only this tier (e.g. impoverished, high_risk).")] = None,
        village: Annotated[str | None, Query(pattern=r"^\d{12}$", description="Only this village.")] = None,
        household: Annotated[str | None, Query(max_length=64, description="Find one household by its registry "
                                                                           "number (hashed, never stored).")] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        format: Annotated[Literal["json", "csv", "xlsx"], Query(description="json, csv or xlsx (Excel).")] = "json",
    ):
        """Households of `region` and everything below it, ranked by risk, from the latest scores, with reasons."""
        key = _key(request)
        _check_region(key, region)
        if village is not None and not village.startswith(region):
            raise HTTPException(422, f"village {village} is not in region {region}")
        from serving.pseudonym import pseudonymize

        pid = pseudonymize(household) if household else None
        query = dict(region_prefix=region, tier=tier, village=village, household_pid=pid,
                     eligible=True if task == "relapse" else None)
        if format == "json":
            rows, total = self.store.latest_scores(task, page=page, page_size=page_size, **query)
        else:  # the whole list, read a page of 1,000 at a time
            rows, total, n = [], None, 1
            while total is None or len(rows) < total:
                part, total = self.store.latest_scores(task, page=n, page_size=1000, **query)
                if not part:
                    break
                rows += part
                n += 1
        items = [_list_item(r) for r in rows]
        if format == "csv":
            return Response(_table(items).to_csv(index=False), media_type="text/csv; charset=utf-8",
                            headers={"content-disposition": f'attachment; filename="risk-{task}-{region}.csv"'})
        if format == "xlsx":
            buf = io.BytesIO()
            _table(items).to_excel(buf, index=False, sheet_name=f"{task} {region}")
            return Response(buf.getvalue(),
                            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                            headers={"content-disposition": f'attachment; filename="risk-{task}-{region}.xlsx"'})
        return {"region": region, "task": task, "tier": tier, "page": page, "page_size": page_size, "total": total,
                "items": items}

    @web.get("/households/{household_id}/explanation", tags=["Officials"],
             summary="A household's latest scores with all contributions")
    def explanation(self, request: Request, household_id: str, task: Literal["poverty", "relapse"] | None = None):
        """`household_id` is the registry number (hashed on arrival) or the pseudonym shown in risk lists."""
        key = _key(request)
        from serving.pseudonym import pseudonymize

        rows = self.store.household_latest(pseudonymize(household_id), task) or \
            self.store.household_latest(household_id, task)
        if not rows:
            raise HTTPException(404, "no score recorded for this household")
        _check_region(key, rows[0]["region_code"])
        return {"household": rows[0]["household_pid"], "region_code": rows[0]["region_code"],
                "scores": [_explanation(r) for r in rows]}

    @web.get("/me", tags=["Officials"], summary="The calling key's role and region")
    def me(self, request: Request):
        key = _key(request)
        return {"key_id": key.key_id, "role": key.role, "region_code": key.region_code}

    @web.get("/docs.json", include_in_schema=False)
    def openapi_document(self):
        """BentoML's OpenAPI document with the API-key scheme declared."""
        return JSONResponse(_openapi_with_security())

    @web.get("/officials", include_in_schema=False, response_class=HTMLResponse)
    def officials_page(self):
        """The officials' page (public HTML; its data calls send the official's key). Same-origin only."""
        page = WEB_DIR / "officials.html"
        if not page.exists():
            raise HTTPException(404, "the officials' page is not installed")
        # everything from this origin only (no CDN, no inline script), never framed, no referrer leaves
        csp = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data: "
               "blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
        return HTMLResponse(page.read_text(encoding="utf-8"), headers={
            "content-security-policy": csp, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
            "cache-control": "no-cache"})

    @web.get("/officials/{asset}", include_in_schema=False)
    def officials_asset(self, asset: str):
        """The page's script and style sheet (served here: the page loads nothing from elsewhere)."""
        media = {"officials.js": "text/javascript", "officials.css": "text/css"}.get(asset)
        path = WEB_DIR / asset
        if media is None or not path.is_file():
            raise HTTPException(404, "no such file")
        return Response(path.read_bytes(), media_type=media,
                        headers={"x-content-type-options": "nosniff", "cache-control": "no-cache"})

    @web.get("/villages", tags=["Officials"], summary="Villages with scores in a region")
    def villages(
        self,
        request: Request,
        region: Annotated[str, Query(pattern=r"^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$",
                                     description="Region code (2, 4, 6, 9 or 12 digits).", examples=["430121"])],
    ):
        """The 12-digit codes of the villages under `region` that have scored households (for list filters)."""
        key = _key(request)
        _check_region(key, region)
        return {"region": region, "villages": self.store.villages(region)}

    @web.get("/review-lists", tags=["Officials"],
             summary="Enrolment, exit and relapse-watch review lists of a region (recommendations; people decide)")
    def review_lists(
        self,
        request: Request,
        region: Annotated[str, Query(pattern=r"^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$",
                                     description="Region code (2, 4, 6, 9 or 12 digits).", examples=["430121"])],
        list: Annotated[Literal["enrolment", "exit", "relapse_watch"], Query(
            description="enrolment: predicted poor, not enrolled; exit: enrolled, low and stable risk; "
                        "relapse_watch: left poverty or near the line, high relapse risk.")] = "enrolment",
        year: Annotated[int | None, Query(ge=1990, le=2100,
                                          description="Wave year (default: the latest run's).")] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
        format: Annotated[Literal["json", "csv"], Query(description="json or csv (the whole list).")] = "json",
    ):
        """The review lists of the latest `tpas roster review` run covering `region` (region by region, in rank
        order, each household with its risks, registry status and reasons).

        These are recommendations for officials to review: no household enters or leaves the registry
        automatically; people decide, after a visit. `run` is null (and `items` empty) when no run covers the region.
        """
        key = _key(request)
        _check_region(key, region)
        from monitoring.roster import NOTE_EN, NOTE_ZH, csv_frame

        run = self.store.latest_review_run(region, year)
        if format == "csv":
            rows, n = [], 1
            while run is not None:
                part, total = self.store.review_list(run["run_id"], list, region, page=n, page_size=1000)
                rows += part
                if not part or len(rows) >= total:
                    break
                n += 1
            return Response(csv_frame(rows).to_csv(index=False), media_type="text/csv; charset=utf-8",
                            headers={"content-disposition": f'attachment; filename="review-{list}-{region}.csv"'})
        rows, total = (self.store.review_list(run["run_id"], list, region, page=page, page_size=page_size)
                       if run is not None else ([], 0))
        return {"region": region, "list": list, "page": page, "page_size": page_size, "total": total,
                "run": None if run is None else {
                    "run_id": run["run_id"], "year": run["year"], "scope": run["scope"],
                    "as_of": str(run["as_of"]), "created_at": str(run["created_at"]), "params": run["params"]},
                "note_en": NOTE_EN, "note_zh": NOTE_ZH, "items": [_review_item(r) for r in rows]}


#: Young-generation threshold of the garbage collector while serving (Python's default: 700).
GC_THRESHOLD = (20_000, 20, 20)


def settle_heap() -> None:
    """Keep the garbage collector off the loaded models and libraries (call once they are loaded).

    The imports and models leave ~450,000 long-lived objects; a full collection walked them all,
    ~285 ms every ~18 batches of 100 households: the whole p99 of `/score`. `gc.freeze` moves them
    out of the collector's sight. A request's objects are nearly all acyclic (freed by reference
    counting), so the young generation is collected every 20,000 allocations instead of 700:
    4.4 -> 0.1 ms of collection per 100-household batch (bench/serving_bench.py).
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


_JSON = msgspec.json.Encoder()


def score_response(scored: int, rejected: int, results: list[dict], errors: list[dict],
                   versions: dict[str, str]) -> Response:
    """The `/score` answer, encoded once.

    Its shape is `ScoreResponse` (what the OpenAPI document shows, and what a test checks these bytes
    against); the results are built as plain dicts with exactly those fields, so validating 2,000
    nested response models per 100 households and serializing them again is skipped (a third of the
    service's cost per household before).
    """
    body = {"scored": scored, "rejected": rejected, "results": results, "errors": errors,
            "model_versions": versions}
    return Response(_JSON.encode(body), media_type="application/json")


def _list_item(r: dict) -> dict:
    reasons = r.get("reasons") or {}
    return {"household": r["household_pid"], "region_code": r["region_code"], "year": r["year"],
            "task": r["task"], "risk": round(float(r["risk"]), 4), "score": r["score"], "tier": r["tier"],
            "main_causes_en": r.get("main_causes_en"), "main_causes_zh": r.get("main_causes_zh"),
            "causes": reasons.get("causes", {}), "reasons_up": reasons.get("up", []),
            "model": f"{r['model_name']}/{r['model_version']}", "scored_at": str(r["scored_at"])}


def _review_item(r: dict) -> dict:
    reasons = r.get("reasons") or {}
    ev = r.get("evidence") or {}

    def rnd(x):
        return None if x is None else round(float(x), 4)

    return {"rank": r["rank"], "household": r["household_pid"], "region_code": r["region_code"],
            "region_group": r["region_group"], "year": r["year"], "list": r["list_kind"],
            "registry_status": r["registry_status"], "monitoring_group": r["monitoring_group"],
            "poverty_risk": rnd(r["poverty_risk"]), "poverty_score": r["poverty_score"],
            "poverty_tier": r["poverty_tier"], "relapse_risk": rnd(r["relapse_risk"]),
            "relapse_score": r["relapse_score"], "relapse_tier": r["relapse_tier"],
            "why_en": ev.get("why_en"), "why_zh": ev.get("why_zh"), "evidence": ev,
            "main_causes_en": r.get("main_causes_en"), "main_causes_zh": r.get("main_causes_zh"),
            "causes": reasons.get("causes", {}), "reasons_up": reasons.get("up", []),
            "reasons_down": reasons.get("down", []),
            "model": f"{r['model_name']}/{r['model_version']}" if r.get("model_name") else None,
            "scored_at": None if r.get("scored_at") is None else str(r["scored_at"])}


def _explanation(r: dict) -> dict:
    item = _list_item(r)
    item["reasons_down"] = (r.get("reasons") or {}).get("down", [])
    item["contributions"] = r.get("contributions") or {}
    item["features"] = r.get("features") or {}
    item["eligible"] = r.get("eligible")
    return item


def _table(items: list[dict]):
    import pandas as pd

    cols = ["household", "region_code", "year", "task", "risk", "score", "tier", "main_causes_en", "main_causes_zh"]
    frame = pd.DataFrame([{c: it.get(c) for c in cols} for it in items], columns=cols)
    frame["top_reasons_en"] = ["; ".join(x["sentence_en"] for x in it["reasons_up"][:3]) for it in items]
    frame["top_reasons_zh"] = ["；".join(x["sentence_zh"] for x in it["reasons_up"][:3]) for it in items]
    frame.insert(0, "rank", range(1, len(frame) + 1))
    return frame


def _openapi_with_security() -> dict:
    spec = TPAS.openapi_spec.asdict()
    spec["info"]["title"] = "TPAS-ML scoring service"
    spec["info"]["contact"] = {"name": "TPAS-ML"}
    spec.setdefault("components", {}).setdefault("securitySchemes", {})["ApiKey"] = {
        "type": "http", "scheme": "bearer",
        "description": "API key from `tpas keys create --role registry|official|analyst [--region CODE]`.",
    }
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict):
                continue
            if any(path == r[1] or (r[1].endswith("/") and path.startswith(r[1])) for r in ROUTE_ROLES):
                op["security"] = [{"ApiKey": []}]
                op.setdefault("responses", {})["401"] = {"description": "Missing or invalid API key."}
                op["responses"]["403"] = {"description": "The key's role or region does not allow this."}
    score = spec["paths"].get("/score", {}).get("post")
    if score:
        score["responses"]["422"] = {"description": "No valid household in the request (each error is listed)."}
    return spec


TPAS.add_asgi_middleware(AuthMiddleware)
