/* TPAS-ML officials' page: sign in with an API key, read the ranked risk list of a region, open a household's
 * reasons. No framework, nothing loaded from elsewhere; every server value is put in the page as text. */
(function () {
  "use strict";

  const KEY_STORE = "tpas.apiKey";      // sessionStorage: this tab only, never in the URL
  const LANG_STORE = "tpas.lang";       // localStorage: remembered
  const REGION_RE = /^(\d{2}|\d{4}|\d{6}|\d{9}|\d{12})$/;
  const TIERS = {
    poverty: ["impoverished", "likely_impoverished", "out_of_poverty"],
    relapse: ["high_risk", "watch", "stable"],
  };

  const TEXT = {
    zh: {
      page_title: "TPAS 风险名单", skip: "跳到主要内容", title: "帮扶对象风险名单",
      advice_head: "仅供参考：",
      advice: "系统仅提供建议，由工作人员决定。名单按风险从高到低排列，请结合入户核实作出判断。",
      noscript: "本页需要启用 JavaScript。", lang_switch: "English", signout: "退出",
      signin_h: "登录", key_label: "API 密钥", key_hint: "密钥只保存在本浏览器标签页中，关闭标签页后需重新输入。",
      signin_btn: "登录", key_missing: "请输入 API 密钥。", list_h: "风险名单",
      who: "已登录：{role}，可查看地区 {region}", who_all: "已登录：{role}，可查看全部地区",
      role_official: "工作人员", role_analyst: "分析人员", role_registry: "登记系统",
      region_label: "地区代码", region_btn: "查看", region_hint: "省 2 位、市 4 位、县 6 位、乡镇 9 位、村 12 位",
      region_invalid: "地区代码应为 2、4、6、9 或 12 位数字。",
      task_label: "评估类型", task_poverty: "贫困风险", task_relapse: "返贫风险",
      tier_label: "等级", tier_all: "全部等级", village_label: "村", village_all: "全部村",
      search_label: "按户编号查询", search_btn: "查询", search_clear: "清除",
      search_hint: "输入登记系统中的户编号；名单只显示化名编号。",
      page_size_label: "每页", csv_btn: "下载 CSV", csv_done: "已下载 {name}。", retry: "重试",
      col_rank: "排名", col_household: "户（化名编号）", col_village: "村", col_risk: "风险", col_tier: "等级",
      col_causes: "主要原因", col_reason: "首要因素",
      open_reasons: "查看户 {pid} 的风险原因", score: "得分 {score}",
      caption: "{region} {task}名单，按风险从高到低排列",
      summary: "{region} · {task}：共 {total} 户，按风险从高到低排列。", summary_one: "查询结果：{total} 户。",
      empty: "没有符合条件的农户。", loading: "加载中…",
      prev: "上一页", next: "下一页", page_info: "第 {page} / {pages} 页", pages_label: "翻页",
      tier_impoverished: "贫困", tier_likely_impoverished: "疑似贫困", tier_out_of_poverty: "非贫困",
      tier_high_risk: "高风险", tier_watch: "需关注", tier_stable: "稳定",
      reasons_h: "风险原因", close: "关闭", household: "户（化名编号）：{pid}，村：{village}",
      risk_line: "风险 {risk}（得分 {score}，{tier}）",
      causes_h: "按致贫原因汇总", legend_up: "推高风险", legend_down: "降低风险",
      up_h: "推高风险的因素", down_h: "降低风险的因素", none: "无。",
      not_eligible: "该户目前不在返贫监测范围内（最近一次评估）。",
      meta: "{year} 年数据 · 模型 {model} · 评分时间 {at}",
      err_401: "密钥无效或已停用，请重新登录。",
      err_403: "超出您的权限范围：此密钥只能查看地区 {region} 及其下属地区的农户。",
      err_403_role: "此密钥没有查看名单的权限（登记系统密钥只能提交数据）。",
      err_404: "未找到该农户的评分。",
      err_422: "请求有误：{detail}",
      err_503: "服务暂时不可用，请稍后重试。",
      err_net: "无法连接服务，请检查网络后重试。",
      err_other: "出错了（HTTP {status}），请稍后重试。",
      cause_illness: "因病", cause_disability: "因残", cause_education: "因学/缺教育", cause_disaster: "因灾",
      cause_land: "缺土地", cause_water: "缺水", cause_skills: "缺技术", cause_labour: "缺劳力",
      cause_capital: "缺资金", cause_transport: "交通条件落后", cause_motivation: "自身发展动力不足",
      cause_other: "其他",
      views_label: "名单", view_risk: "风险名单", view_review: "复核名单",
      review_list_label: "复核名单", list_enrolment: "纳入复核（预测贫困、未纳入）",
      list_exit: "退出复核（已纳入、风险持续较低）", list_relapse_watch: "返贫监测关注（返贫风险高）",
      short_enrolment: "纳入复核", short_exit: "退出复核", short_relapse_watch: "返贫监测关注",
      review_advice_head: "仅为建议：",
      review_advice: "系统不会自动将任何农户纳入或移出名单。复核名单供工作人员入户核实，由工作人员决定。",
      rule_enrolment: "预测为贫困（等级为“贫困”或贫困风险不低于 {min}）且尚未纳入（{statuses}）的农户，按贫困风险从高到低排列。",
      rule_exit: "已纳入（{statuses}）且近 {months} 个月每次评估的贫困风险均低于 {max}（至少 {n} 次）的农户，"
        + "按风险从低到高排列。请按退出标准（收入稳定超过标准、“两不愁三保障”）入户核实后再作决定。",
      rule_relapse_watch: "已脱贫或处于监测线附近、返贫风险高（等级为“高风险”或返贫风险不低于 {min}）的农户，按返贫风险从高到低排列。",
      review_summary: "{region} · {list}：共 {total} 户（{year} 年数据，{date} 生成）。",
      review_none: "该地区还没有复核名单（需先运行 tpas roster review）。",
      review_empty: "本名单没有农户。",
      review_caption: "{region} {list}，按排名排列",
      col_status: "建档立卡状态", col_poverty_risk: "贫困风险", col_relapse_risk: "返贫风险", col_why: "列入原因",
      col_reasons: "主要因素",
      status_not_registered: "未建档立卡", status_registered_poor: "建档立卡贫困户", status_exited: "已脱贫",
      status_monitored: "监测对象", status_unknown: "未知", or: "或",
    },
    en: {
      page_title: "TPAS risk list", skip: "Skip to the main content", title: "Household risk list",
      advice_head: "For reference only: ",
      advice: "The system only recommends; officials decide. The list is ranked from the highest risk down; "
        + "check with a home visit before deciding.",
      noscript: "This page needs JavaScript.", lang_switch: "中文", signout: "Sign out",
      signin_h: "Sign in", key_label: "API key",
      key_hint: "The key is kept in this browser tab only; you enter it again after closing the tab.",
      signin_btn: "Sign in", key_missing: "Enter your API key.", list_h: "Risk list",
      who: "Signed in: {role}, may read region {region}", who_all: "Signed in: {role}, may read every region",
      role_official: "official", role_analyst: "analyst", role_registry: "registry system",
      region_label: "Region code", region_btn: "Show",
      region_hint: "2 digits province, 4 city, 6 county, 9 township, 12 village",
      region_invalid: "A region code has 2, 4, 6, 9 or 12 digits.",
      task_label: "Assessment", task_poverty: "Poverty risk", task_relapse: "Relapse risk",
      tier_label: "Tier", tier_all: "All tiers", village_label: "Village", village_all: "All villages",
      search_label: "Find a household by registry number", search_btn: "Find", search_clear: "Clear",
      search_hint: "Type the household number from the registry; the list shows pseudonyms only.",
      page_size_label: "Per page", csv_btn: "Download CSV", csv_done: "Downloaded {name}.", retry: "Retry",
      col_rank: "Rank", col_household: "Household (pseudonym)", col_village: "Village", col_risk: "Risk",
      col_tier: "Tier", col_causes: "Main causes", col_reason: "Top reason",
      open_reasons: "Show the reasons for household {pid}", score: "score {score}",
      caption: "{task} list of {region}, highest risk first",
      summary: "{region} · {task}: {total} households, highest risk first.", summary_one: "Search result: {total}.",
      empty: "No household matches these filters.", loading: "Loading…",
      prev: "Previous", next: "Next", page_info: "Page {page} of {pages}", pages_label: "Pages",
      tier_impoverished: "impoverished", tier_likely_impoverished: "likely impoverished",
      tier_out_of_poverty: "out of poverty", tier_high_risk: "high risk", tier_watch: "watch", tier_stable: "stable",
      reasons_h: "Reasons", close: "Close", household: "Household (pseudonym): {pid}, village: {village}",
      risk_line: "risk {risk} (score {score}, {tier})",
      causes_h: "By cause of poverty", legend_up: "raises the risk", legend_down: "lowers the risk",
      up_h: "What raises the risk", down_h: "What lowers the risk", none: "None.",
      not_eligible: "This household is not under relapse monitoring at its latest assessment.",
      meta: "data of {year} · model {model} · scored {at}",
      err_401: "The API key is invalid or revoked. Please sign in again.",
      err_403: "Outside your region: this key may only read households of region {region} and below.",
      err_403_role: "This key may not read lists (registry keys only send data).",
      err_404: "No score was found for this household.",
      err_422: "The request is not valid: {detail}",
      err_503: "The service is unavailable for the moment. Please retry shortly.",
      err_net: "Cannot reach the service. Check the connection and retry.",
      err_other: "Something went wrong (HTTP {status}). Please retry.",
      cause_illness: "illness", cause_disability: "disability", cause_education: "lack of education",
      cause_disaster: "natural disaster", cause_land: "shortage of land", cause_water: "shortage of water",
      cause_skills: "lack of skills", cause_labour: "shortage of labour", cause_capital: "shortage of capital",
      cause_transport: "poor transport", cause_motivation: "lack of self-motivation", cause_other: "other",
      views_label: "Lists", view_risk: "Risk list", view_review: "Review lists",
      review_list_label: "Review list", list_enrolment: "Enrolment review (predicted poor, not enrolled)",
      list_exit: "Exit review (enrolled, low and stable risk)", list_relapse_watch: "Relapse watch (high relapse risk)",
      short_enrolment: "enrolment review", short_exit: "exit review", short_relapse_watch: "relapse watch",
      review_advice_head: "Recommendations only: ",
      review_advice: "no household enters or leaves the registry automatically. The review lists are for "
        + "officials to check with a visit; officials decide.",
      rule_enrolment: "Households predicted poor (tier impoverished or poverty risk of at least {min}) and not "
        + "enrolled ({statuses}), highest poverty risk first.",
      rule_exit: "Enrolled households ({statuses}) whose every poverty score of the last {months} months was below "
        + "{max} (at least {n} scores), lowest risk first. Check the exit rules (income stably above the line, the "
        + "two no-worries and three guarantees) with a visit before deciding.",
      rule_relapse_watch: "Households that left poverty or are near the line with a high relapse risk (tier high "
        + "risk or relapse risk of at least {min}), highest relapse risk first.",
      review_summary: "{region} · {list}: {total} households (data of {year}, made {date}).",
      review_none: "No review lists for this region yet (run `tpas roster review`).",
      review_empty: "No household on this list.",
      review_caption: "{list} of {region}, by rank",
      col_status: "Registry status", col_poverty_risk: "Poverty risk", col_relapse_risk: "Relapse risk",
      col_why: "Why listed", col_reasons: "Main reasons",
      status_not_registered: "not registered", status_registered_poor: "registered poor", status_exited: "exited",
      status_monitored: "monitored", status_unknown: "unknown", or: "or",
    },
  };

  const $ = (id) => document.getElementById(id);
  const state = {
    lang: "zh", key: null, me: null, region: "", task: "poverty", tier: "", village: "", household: "",
    page: 1, pageSize: 20, total: 0, items: [], error: null, retry: null, seq: 0, opener: null, explained: null,
    view: "risk", review: { list: "enrolment", page: 1, total: 0, items: [], run: null, region: "", seq: 0 },
  };

  // -- text -------------------------------------------------------------------------------------------------------
  function t(name, vars) {
    let s = (TEXT[state.lang] && TEXT[state.lang][name]) || TEXT.zh[name] || name;
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return s;
  }
  const causeName = (c) => (TEXT.zh["cause_" + c] ? t("cause_" + c) : c);
  const tierName = (x) => (TEXT.zh["tier_" + x] ? t("tier_" + x) : x);
  const taskName = (x) => t("task_" + x);
  const pct = (r) => (r * 100).toFixed(r >= 0.995 || r < 0.1 ? 1 : 0) + "%";
  const signed = (v) => (v > 0 ? "+" : v < 0 ? "\u2212" : "") + Math.abs(v).toFixed(2);
  const shortPid = (p) => (p && p.length > 12 ? p.slice(0, 10) + "\u2026" : p || "");

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of [].concat(children || [])) if (c) node.append(c);
    return node;
  }

  function applyLanguage() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("page_title");
    document.querySelectorAll("[data-i18n]").forEach((n) => { n.textContent = t(n.dataset.i18n); });
    const sw = $("lang");
    sw.textContent = t("lang_switch");
    sw.lang = state.lang === "zh" ? "en" : "zh-CN";
    $("pager").setAttribute("aria-label", t("pages_label"));
    $("review-pager").setAttribute("aria-label", t("pages_label"));
    $("views").setAttribute("aria-label", t("views_label"));
    fillTiers();
    fillVillages(state.villages || []);
    renderWho();
    renderList();
    renderReview();
    renderMessage();
    if ($("reasons").open && state.explained) renderReasons(state.explained);
  }

  // -- calls --------------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) { super("HTTP " + status); this.status = status; this.detail = detail; }
  }

  async function api(path, params, as) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== null && v !== undefined) {
      url.searchParams.set(k, v);
    }
    let res;
    try {
      res = await fetch(url, { headers: { Authorization: "Bearer " + state.key }, cache: "no-store",
                               credentials: "omit" });
    } catch (e) {
      throw new ApiError(0, String(e));
    }
    if (!res.ok) {
      let detail = "";
      try {
        const body = await res.json();
        detail = body.detail !== undefined ? body.detail : body.error;
        if (Array.isArray(detail)) detail = detail.map((d) => d.msg || JSON.stringify(d)).join("; ");
      } catch (e) { /* not JSON */ }
      throw new ApiError(res.status, detail || "");
    }
    return as === "blob" ? res : res.json();
  }

  function errorText(err) {
    const s = err instanceof ApiError ? err.status : -1;
    if (s === 401) return t("err_401");
    if (s === 403) {
      if (state.me && state.me.role === "registry") return t("err_403_role");
      return t("err_403", { region: (state.me && state.me.region_code) || "" });
    }
    if (s === 404) return t("err_404");
    if (s === 422) return t("err_422", { detail: err.detail || "" });
    if (s === 503) return t("err_503");
    if (s === 0) return t("err_net");
    return t("err_other", { status: s });
  }

  function showError(err, retry) {
    state.error = err;
    state.retry = retry || null;
    renderMessage();
    if (err instanceof ApiError && err.status === 401) signOut(t("err_401"));
  }

  function clearError() {
    state.error = null;
    state.retry = null;
    renderMessage();
  }

  function renderMessage() {
    const box = $("message");
    if (!state.error) { box.hidden = true; return; }
    $("message-text").textContent = errorText(state.error);
    const s = state.error.status;
    $("retry").hidden = !(state.retry && (s === 503 || s === 0 || s >= 500));
    box.dataset.status = String(s);
    box.hidden = false;
  }

  // -- sign in ----------------------------------------------------------------------------------------------------
  async function signIn(key) {
    state.key = key;
    const err = $("signin-error");
    err.hidden = true;
    $("signin-btn").disabled = true;
    try {
      state.me = await api("/me");
    } catch (e) {
      state.key = null;
      sessionStorage.removeItem(KEY_STORE);
      err.textContent = errorText(e);
      err.hidden = false;
      $("signin").hidden = false;
      $("key").focus();
      return;
    } finally {
      $("signin-btn").disabled = false;
    }
    sessionStorage.setItem(KEY_STORE, key);
    $("key").value = "";
    $("signin").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    renderWho();
    if (state.me.role === "registry") {
      showError(new ApiError(403, ""));
      return;
    }
    setRegion(state.me.region_code || "43");
  }

  function signOut(reason) {
    sessionStorage.removeItem(KEY_STORE);
    Object.assign(state, { key: null, me: null, items: [], total: 0, villages: [], household: "" });
    $("rows").replaceChildren();  // nothing of the list stays in the page after signing out
    $("review-rows").replaceChildren();
    Object.assign(state.review, { items: [], total: 0, run: null, page: 1 });
    $("household").value = "";
    $("app").hidden = true;
    $("signout").hidden = true;
    $("who").hidden = true;
    $("signin").hidden = false;
    const err = $("signin-error");
    err.textContent = reason || "";
    err.hidden = !reason;
    $("key").focus();
  }

  function renderWho() {
    const who = $("who");
    if (!state.me) { who.hidden = true; return; }
    const role = t("role_" + state.me.role);
    who.textContent = state.me.region_code ? t("who", { role, region: state.me.region_code }) : t("who_all", { role });
    who.hidden = false;
  }

  // -- filters ----------------------------------------------------------------------------------------------------
  function fillTiers() {
    const sel = $("tier");
    sel.replaceChildren(el("option", { value: "", text: t("tier_all") }),
      ...TIERS[state.task].map((x) => el("option", { value: x, text: tierName(x) })));
    sel.value = TIERS[state.task].includes(state.tier) ? state.tier : "";
  }

  function fillVillages(codes) {
    state.villages = codes;
    const sel = $("village");
    sel.replaceChildren(el("option", { value: "", text: t("village_all") }),
      ...codes.map((c) => el("option", { value: c, text: c })));
    sel.value = codes.includes(state.village) ? state.village : "";
    sel.disabled = codes.length === 0;
  }

  async function loadVillages() {
    const region = state.region;
    try {
      const res = await api("/villages", { region });
      if (region === state.region) fillVillages(res.villages || []);
    } catch (e) {
      if (region === state.region) fillVillages([]);  // the list call reports the error
    }
  }

  function setRegion(region) {
    state.region = region;
    state.village = "";
    state.page = 1;
    $("region").value = region;
    state.review.page = 1;
    fillVillages([]);
    loadVillages();
    if (state.view === "review") loadReview();
    else loadList();
  }

  // -- the list -----------------------------------------------------------------------------------------------------
  function listParams() {
    return { region: state.region, task: state.task, tier: state.tier, village: state.village,
             household: state.household };
  }

  async function loadList() {
    const seq = ++state.seq;
    const results = $("results");
    results.setAttribute("aria-busy", "true");
    results.dataset.state = "loading";
    $("summary").textContent = t("loading");
    try {
      const res = await api("/risk-list", { ...listParams(), page: state.page, page_size: state.pageSize });
      if (seq !== state.seq) return;
      state.items = res.items || [];
      state.total = res.total || 0;
      state.listRegion = res.region;
      state.listTask = res.task;
      clearError();
      results.dataset.state = "ready";
    } catch (e) {
      if (seq !== state.seq) return;
      state.items = [];
      state.total = 0;
      results.dataset.state = "error";
      showError(e, loadList);
    } finally {
      if (seq === state.seq) results.setAttribute("aria-busy", "false");
    }
    renderList();
    results.dataset.loads = String((Number(results.dataset.loads) || 0) + 1);  // lists shown so far
  }

  function renderList() {
    const tbody = $("rows");
    const items = state.items || [];
    const offset = (state.page - 1) * state.pageSize;
    const L = (name) => t(name);
    tbody.replaceChildren(...items.map((it, i) => {
      const open = el("button", { type: "button", class: "pid", title: it.household, "data-pid": it.household,
                                  "aria-label": t("open_reasons", { pid: shortPid(it.household) }),
                                  text: shortPid(it.household) });
      open.addEventListener("click", () => openReasons(it.household, open, it));
      const meter = el("span", { class: "meter", "aria-hidden": "true" }, el("span"));
      meter.firstChild.style.width = Math.round(it.risk * 100) + "%";
      const top = Object.entries(it.causes || {}).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).slice(0, 3);
      const reason = (it.reasons_up || [])[0];
      return el("tr", { "data-household": it.household, "data-region": it.region_code, "data-risk": it.risk,
                        "data-tier": it.tier }, [
        el("td", { class: "num", "data-label": L("col_rank"), text: String(offset + i + 1) }),
        el("td", { "data-label": L("col_household") }, open),
        el("td", { class: "num", "data-label": L("col_village"), text: it.region_code }),
        el("td", { class: "num", "data-label": L("col_risk") }, el("span", { class: "risk-cell" }, [
          meter, el("span", { text: pct(it.risk) }),
          el("span", { class: "score", text: t("score", { score: Math.round(it.score) }) })])),
        el("td", { "data-label": L("col_tier") },
          el("span", { class: "tier tier-" + it.tier, text: tierName(it.tier) })),
        el("td", { "data-label": L("col_causes") }, el("span", { class: "chips" },
          top.length ? top.map(([c]) => el("span", { class: "chip", text: causeName(c) }))
            : [el("span", { text: "—" })])),
        el("td", { class: "reason", "data-label": L("col_reason"),
                   text: reason ? reason[state.lang === "zh" ? "sentence_zh" : "sentence_en"] : "—" }),
      ]);
    }));
    const ready = $("results").dataset.state === "ready";
    $("empty").hidden = !(ready && items.length === 0);
    const regionCode = state.listRegion || state.region;
    const task = taskName(state.listTask || state.task);
    $("caption").textContent = t("caption", { region: regionCode, task });
    if (ready) {
      $("summary").textContent = state.household ? t("summary_one", { total: state.total })
        : t("summary", { region: regionCode, task, total: state.total });
    } else if ($("results").dataset.state === "error") {
      $("summary").textContent = "";
    }
    const pages = Math.max(1, Math.ceil(state.total / state.pageSize));
    $("page-info").textContent = t("page_info", { page: state.page, pages });
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
    $("pager").hidden = !ready || state.total <= state.pageSize;
  }

  // Fetch a CSV with the key (a plain link cannot send the header) and save it under the server's file name.
  async function saveCsv(buttonId, summaryId, path, params, fallbackName, retry) {
    const btn = $(buttonId);
    btn.disabled = true;
    try {
      const res = await api(path, { ...params, format: "csv" }, "blob");
      const blob = await res.blob();
      const m = /filename="?([^";]+)"?/.exec(res.headers.get("content-disposition") || "");
      const name = m ? m[1] : fallbackName;
      const href = URL.createObjectURL(blob);
      const a = el("a", { href, download: name });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10000);
      clearError();
      $(summaryId).textContent = t("csv_done", { name });
    } catch (e) {
      showError(e, retry);
    } finally {
      btn.disabled = false;
    }
  }

  function downloadCsv() {
    return saveCsv("csv", "summary", "/risk-list", listParams(),
                   "risk-" + state.task + "-" + state.region + ".csv", downloadCsv);
  }

  // -- review lists (tpas roster review: recommendations, people decide) ------------------------------------------
  function setView(view) {
    state.view = view;
    $("view-risk").setAttribute("aria-pressed", String(view === "risk"));
    $("view-review").setAttribute("aria-pressed", String(view === "review"));
    document.querySelectorAll(".risk-only").forEach((n) => { n.hidden = view !== "risk"; });
    document.querySelectorAll(".review-only").forEach((n) => { n.hidden = view !== "review"; });
    clearError();
    if (view === "review") loadReview();
    else loadList();
  }

  async function loadReview() {
    const r = state.review;
    const seq = ++r.seq;
    const box = $("review");
    box.setAttribute("aria-busy", "true");
    box.dataset.state = "loading";
    $("review-summary").textContent = t("loading");
    try {
      const res = await api("/review-lists", { region: state.region, list: r.list, page: r.page,
                                               page_size: state.pageSize });
      if (seq !== r.seq) return;
      Object.assign(r, { items: res.items || [], total: res.total || 0, run: res.run, region: res.region,
                         shown: res.list });
      clearError();
      box.dataset.state = "ready";
    } catch (e) {
      if (seq !== r.seq) return;
      Object.assign(r, { items: [], total: 0, run: null });
      box.dataset.state = "error";
      showError(e, loadReview);
    } finally {
      if (seq === r.seq) box.setAttribute("aria-busy", "false");
    }
    renderReview();
    box.dataset.loads = String((Number(box.dataset.loads) || 0) + 1);  // review lists shown so far
  }

  function ruleText(list, params) {
    const p = (params || {})[list] || {};
    const statuses = (p.statuses || []).map((s) => t("status_" + s)).join(state.lang === "zh" ? "、" : ", ");
    if (list === "exit") {
      return t("rule_exit", { statuses, months: p.months, max: pct(p.max_risk || 0), n: p.min_scores });
    }
    const min = p.min_risk === null || p.min_risk === undefined ? "—" : pct(p.min_risk);
    return t("rule_" + list, { statuses, min });
  }

  function renderReview() {
    const r = state.review;
    const box = $("review");
    const list = r.shown || r.list;
    const L = (name) => t(name);
    const zh = state.lang === "zh";
    $("review-rows").replaceChildren(...(r.items || []).map((it) => {
      const open = el("button", { type: "button", class: "pid", title: it.household, "data-pid": it.household,
                                  "aria-label": t("open_reasons", { pid: shortPid(it.household) }),
                                  text: shortPid(it.household) });
      open.addEventListener("click", () => openReasons(it.household, open, it));
      const side = it.list === "exit" ? (it.reasons_down || []) : (it.reasons_up || []);
      const top = Object.entries(it.causes || {}).filter(([, v]) => (it.list === "exit" ? v < 0 : v > 0))
        .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 3);
      const risk = (x, tier) => (x === null || x === undefined ? el("span", { text: "—" })
        : el("span", { class: "risk-tier" }, [el("span", { text: pct(x) }),
          tier ? el("span", { class: "tier tier-" + tier, text: tierName(tier) }) : null]));
      return el("tr", { "data-household": it.household, "data-region": it.region_code, "data-rank": it.rank,
                        "data-list": it.list }, [
        el("td", { class: "num", "data-label": L("col_rank"), text: String(it.rank) }),
        el("td", { "data-label": L("col_household") }, open),
        el("td", { class: "num", "data-label": L("col_village"), text: it.region_code }),
        el("td", { "data-label": L("col_status"), text: t("status_" + (it.registry_status || "unknown")) }),
        el("td", { "data-label": L("col_poverty_risk") }, risk(it.poverty_risk, it.poverty_tier)),
        el("td", { "data-label": L("col_relapse_risk") }, risk(it.relapse_risk, it.relapse_tier)),
        el("td", { class: "why", "data-label": L("col_why"), text: (zh ? it.why_zh : it.why_en) || "—" }),
        el("td", { class: "reason", "data-label": L("col_reasons") }, el("div", {}, [
          el("span", { class: "chips" }, top.map(([c]) => el("span", { class: "chip", text: causeName(c) }))),
          side.length ? el("ul", { class: "sentences " + (it.list === "exit" ? "down" : "up") },
            side.slice(0, 2).map((x) => el("li", { text: x[zh ? "sentence_zh" : "sentence_en"] })))
            : el("span", { text: "—" }),
        ])),
      ]);
    }));
    const ready = box.dataset.state === "ready";
    const empty = $("review-empty");
    empty.hidden = !(ready && (r.items || []).length === 0);
    empty.textContent = r.run ? t("review_empty") : t("review_none");
    $("review-rule").textContent = r.run ? ruleText(list, r.run.params) : "";
    $("review-caption").textContent = t("review_caption",
      { region: r.region || state.region, list: t("short_" + list) });
    if (ready) {
      $("review-summary").textContent = r.run ? t("review_summary", {
        region: r.region, list: t("short_" + list), total: r.total, year: r.run.year,
        date: String(r.run.created_at || "").slice(0, 16).replace("T", " ") }) : "";
    } else if (box.dataset.state === "error") {
      $("review-summary").textContent = "";
    }
    const pages = Math.max(1, Math.ceil(r.total / state.pageSize));
    $("review-page-info").textContent = t("page_info", { page: r.page, pages });
    $("review-prev").disabled = r.page <= 1;
    $("review-next").disabled = r.page >= pages;
    $("review-pager").hidden = !ready || r.total <= state.pageSize;
    $("review-csv").disabled = !ready || !r.run || r.total === 0;
  }

  function downloadReviewCsv() {
    return saveCsv("review-csv", "review-summary", "/review-lists",
                   { region: state.region, list: state.review.list },
                   "review-" + state.review.list + "-" + state.region + ".csv", downloadReviewCsv);
  }

  // -- a household's reasons ---------------------------------------------------------------------------------------
  async function openReasons(pid, opener, item) {
    const dlg = $("reasons");
    state.opener = opener;
    state.explained = null;
    $("reasons-household").textContent = t("household", { pid, village: item ? item.region_code : "" });
    $("reasons-body").replaceChildren(el("p", { text: t("loading") }));
    $("reasons-error").hidden = true;
    dlg.dataset.state = "loading";
    if (!dlg.open) dlg.showModal();
    $("reasons-scroll").scrollTop = 0;
    try {
      const res = await api("/households/" + encodeURIComponent(pid) + "/explanation");
      state.explained = res;
      renderReasons(res);
      dlg.dataset.state = "ready";
    } catch (e) {
      $("reasons-body").replaceChildren();
      const box = $("reasons-error");
      box.textContent = errorText(e);
      box.hidden = false;
      dlg.dataset.state = "error";
      if (e instanceof ApiError && e.status === 401) { dlg.close(); showError(e); }
    }
  }

  function renderReasons(res) {
    $("reasons-household").textContent = t("household", { pid: res.household, village: res.region_code });
    const first = state.view !== "review" ? state.task
      : state.review.list === "relapse_watch" ? "relapse" : "poverty";  // the list's own task first
    const scores = [...(res.scores || [])].sort((a, b) => (a.task === first ? -1 : b.task === first ? 1 : 0));
    $("reasons-body").replaceChildren(...scores.map(renderScore));
  }

  function sentenceList(reasons, cls) {
    if (!reasons || !reasons.length) return el("p", { class: "hint", text: t("none") });
    const key = state.lang === "zh" ? "sentence_zh" : "sentence_en";
    return el("ul", { class: "sentences " + cls }, reasons.map((r) => el("li", { text: r[key] })));
  }

  function causeBars(causes) {
    const rows = Object.entries(causes || {}).filter(([, v]) => Math.abs(v) >= 0.005)
      .sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
    if (!rows.length) return el("p", { class: "hint", text: t("none") });
    const max = Math.max(...rows.map(([, v]) => Math.abs(v)));
    return el("ul", { class: "bars", "data-chart": "causes" }, rows.map(([c, v]) => {
      const dir = v > 0 ? "up" : "down";
      const bar = el("span", { class: "bar " + dir });
      bar.style.width = Math.max(1, (Math.abs(v) / max) * 50).toFixed(1) + "%";
      return el("li", { "data-cause": c, "data-value": v }, [
        el("span", { class: "bar-label", text: causeName(c) }),
        el("span", { class: "bar-track", "aria-hidden": "true" }, bar),
        el("span", { class: "bar-value " + dir, text: signed(v) },
          el("span", { class: "visually-hidden", text: " " + t(dir === "up" ? "legend_up" : "legend_down") })),
      ]);
    }));
  }

  function renderScore(s) {
    const block = el("section", { class: "task-block", "data-task": s.task }, [
      el("h3", { text: taskName(s.task) }),
      el("p", { text: t("risk_line", { risk: pct(s.risk), score: Math.round(s.score), tier: tierName(s.tier) }) }),
    ]);
    const main = state.lang === "zh" ? s.main_causes_zh : s.main_causes_en;
    if (main) block.append(el("p", { class: "hint", text: main }));
    if (s.task === "relapse" && s.eligible === false) block.append(el("p", { class: "hint", text: t("not_eligible") }));
    block.append(
      el("h4", { text: t("causes_h") }),
      el("p", { class: "legend" }, [
        el("span", {}, [el("span", { class: "swatch up", "aria-hidden": "true" }), t("legend_up")]),
        el("span", {}, [el("span", { class: "swatch down", "aria-hidden": "true" }), t("legend_down")]),
      ]),
      causeBars(s.causes),
      el("h4", { text: t("up_h") }), sentenceList(s.reasons_up, "up"),
      el("h4", { text: t("down_h") }), sentenceList(s.reasons_down, "down"),
      el("p", { class: "meta", text: t("meta", { year: s.year, model: s.model,
                                                    at: String(s.scored_at || "").slice(0, 16).replace("T", " ") }) }),
    );
    return block;
  }

  // -- wiring -------------------------------------------------------------------------------------------------------
  function init() {
    const saved = localStorage.getItem(LANG_STORE);
    state.lang = saved === "en" || saved === "zh" ? saved : "zh";
    state.pageSize = Number($("page-size").value) || 20;

    $("lang").addEventListener("click", () => {
      state.lang = state.lang === "zh" ? "en" : "zh";
      localStorage.setItem(LANG_STORE, state.lang);
      applyLanguage();
    });
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const key = $("key").value.trim();
      if (!key) {
        const err = $("signin-error");
        err.textContent = t("key_missing");
        err.hidden = false;
        $("key").focus();
        return;
      }
      signIn(key);
    });
    $("signout").addEventListener("click", () => signOut());
    $("region-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const region = $("region").value.trim();
      if (!REGION_RE.test(region)) {
        showError(new ApiError(422, t("region_invalid")));
        $("region").focus();
        return;
      }
      state.household = "";
      $("household").value = "";
      setRegion(region);
    });
    $("task").addEventListener("change", (ev) => {
      state.task = ev.target.value;
      state.tier = "";
      state.page = 1;
      fillTiers();
      loadList();
    });
    $("tier").addEventListener("change", (ev) => { state.tier = ev.target.value; state.page = 1; loadList(); });
    $("village").addEventListener("change", (ev) => { state.village = ev.target.value; state.page = 1; loadList(); });
    $("page-size").addEventListener("change", (ev) => {
      state.pageSize = Number(ev.target.value) || 20;
      state.page = 1;
      loadList();
    });
    $("search-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.household = $("household").value.trim();
      state.page = 1;
      loadList();
    });
    $("search-clear").addEventListener("click", () => {
      $("household").value = "";
      if (state.household) { state.household = ""; state.page = 1; loadList(); }
    });
    $("prev").addEventListener("click", () => { if (state.page > 1) { state.page -= 1; loadList(); } });
    $("next").addEventListener("click", () => { state.page += 1; loadList(); });
    $("csv").addEventListener("click", downloadCsv);
    $("view-risk").addEventListener("click", () => { if (state.view !== "risk") setView("risk"); });
    $("view-review").addEventListener("click", () => { if (state.view !== "review") setView("review"); });
    $("review-list").addEventListener("change", (ev) => {
      state.review.list = ev.target.value;
      state.review.page = 1;
      loadReview();
    });
    $("review-prev").addEventListener("click", () => {
      if (state.review.page > 1) { state.review.page -= 1; loadReview(); }
    });
    $("review-next").addEventListener("click", () => { state.review.page += 1; loadReview(); });
    $("review-csv").addEventListener("click", downloadReviewCsv);
    $("retry").addEventListener("click", () => { if (state.retry) state.retry(); });
    $("reasons-close").addEventListener("click", () => $("reasons").close());
    $("reasons").addEventListener("close", () => {
      state.explained = null;
      if (state.opener && document.contains(state.opener)) state.opener.focus();
    });

    applyLanguage();
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) signIn(key);
    else $("signin").hidden = false;
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
