"""What an agent spent: a backend's ``usage`` event read as tokens and cost for the turn.

Each backend counts in its own way, so the usage event is accounted when it is appended
(``account``: the backend's own fields kept, what they mean added), and the ledger only
sums (``UsageFold``): the fold never reads the config.

- ``tokens_in``: every input token the model read, cached ones included (Claude and
  opencode count cache reads and writes apart from their ``input_tokens``; Codex and
  Gemini within them); ``tokens_cached``: those read from a cache; ``tokens_out``:
  what it wrote (Gemini's thoughts and opencode's reasoning included: billed as
  output).
- ``cost_usd``: the backend's own cost when it gives one (Claude, opencode, an ACP
  agent's ``usage_update``); else an estimate from the config's price table
  (``[prices."MODEL"]``, USD per million tokens, the model found by its exact name,
  then by the longest prefix), marked ``cost_is_estimate``; a model with no price is
  counted at 0, marked ``unpriced`` too. A cost of 0 for tokens spent is no cost given.
- ``cumulative``: the fields that are the backend session's totals so far rather than
  this event's share (an ACP agent's cost; Codex's tokens after ``exec resume`` when
  the thread's earlier totals could not be read): the fold counts what they grew by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sisyphus_tui.agents.config import Price

PER = 1_000_000  # prices are per million tokens
FIELDS = ("tokens_in", "tokens_out", "tokens_cached", "cost_usd")
# Backends whose ``input_tokens`` leave the cached (and cache-written) tokens out.
CACHE_APART = frozenset({"claude", "opencode", "acp"})


@dataclass(frozen=True)
class Usage:
    """Tokens and cost: of one usage event, one agent, one role or the whole run."""

    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    cost_usd: float = 0.0
    cost_is_estimate: bool = False  # some of the cost was estimated from the price table
    unpriced: bool = False  # ... and some of it had no price: counted at 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out,
                     self.tokens_cached + other.tokens_cached,
                     self.cost_usd + other.cost_usd,
                     self.cost_is_estimate or other.cost_is_estimate,
                     self.unpriced or other.unpriced)

    @property
    def spent(self) -> bool:
        """Whether anything was spent (a token or a cent)."""
        return bool(self.tokens_in or self.tokens_out or self.tokens_cached
                    or self.cost_usd)

    def record(self) -> dict[str, Any]:
        """As JSON fields (``sisyphus cost --json``, ``agents --json``)."""
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "tokens_cached": self.tokens_cached, "cost_usd": round(self.cost_usd, 6),
                "cost_is_estimate": self.cost_is_estimate, "unpriced": self.unpriced}


@dataclass(frozen=True)
class Spend:
    """What the run spent: per agent, per role and in all (``Ledger.spend()``)."""

    agents: dict[str, Usage] = field(default_factory=dict)
    roles: dict[str, Usage] = field(default_factory=dict)
    run: Usage = Usage()


def cost_text(usage: Usage) -> str:
    """A cost as people read it: ``$0.0123``, ``~$0.0123`` when estimated (``~$0`` with
    nothing priced)."""
    return f"{'~' if usage.cost_is_estimate else ''}${usage.cost_usd:.4f}"


def tokens_text(count: int) -> str:
    """A token count, short: ``950``, ``12.3k``, ``4.5M``."""
    if count < 1000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"


# -- accounting a usage event when it is appended --------------------------------------

def price_of(model: str | None, prices: Mapping[str, Price]) -> tuple[str, Price] | None:
    """The price table's entry for ``model``: its exact name, else the longest name
    that starts it; a ``provider/model`` name (opencode's) is looked up whole, then
    without the provider. None: no price known."""
    if not model or not prices:
        return None
    names = [model]
    if "/" in model:
        names.append(model.split("/", 1)[1])
    for name in names:
        if name in prices:
            return name, prices[name]
    for name in names:
        starts = [key for key in prices if key and name.startswith(key)]
        if starts:
            best = max(starts, key=len)
            return best, prices[best]
    return None


def _int(value: Any) -> int:
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        number = float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return number if number > 0 and number != float("inf") else 0.0


def tokens_of(backend: str | None, data: Mapping[str, Any]) -> tuple[int, int, int]:
    """(tokens in, out, cached) of a usage event as ``backend`` reports it, in the
    common sense (module docstring)."""
    cached = _int(data.get("cached_tokens"))
    given_in = _int(data.get("input_tokens"))
    out = _int(data.get("output_tokens"))
    if backend in CACHE_APART:
        tokens_in = given_in + cached + _int(data.get("cache_creation_tokens")) + \
            _int(data.get("cache_write_tokens"))
    else:
        tokens_in = max(given_in, cached)
    if backend == "opencode":
        out += _int(data.get("reasoning_tokens"))  # (its output leaves reasoning out)
    elif backend == "gemini":
        # Its total counts the thoughts, which its output_tokens leave out.
        out = max(out, _int(data.get("total_tokens")) - given_in)
    return tokens_in, out, cached


def estimate(tokens_in: int, tokens_out: int, tokens_cached: int, price: Price) -> float:
    """The cost of these tokens at ``price`` (USD per million): the cached ones at its
    cached rate, the rest of the input at its input rate."""
    fresh = max(tokens_in - tokens_cached, 0)
    return (fresh * price.input + tokens_cached * price.cached
            + tokens_out * price.output) / PER


def account(backend: str | None, data: Mapping[str, Any], *, model: str | None = None,
            prices: Mapping[str, Price] | None = None) -> dict[str, Any]:
    """A usage event's data as it is appended: the backend's fields kept, with what they
    mean for the turn added (``tokens_in``/``tokens_out``/``tokens_cached``,
    ``cost_usd``, ``cost_is_estimate``, and ``unpriced``, ``priced_as``, ``cumulative``
    where they apply). ``model``: the model the agent was asked to use (a backend that
    names its models, Gemini, is priced per model it used)."""
    out: dict[str, Any] = dict(data)
    prices = prices or {}
    tokens_in, tokens_out, tokens_cached = tokens_of(backend, data)
    cumulative: list[str] = []
    if backend == "codex" and data.get("scope") == "thread":
        cumulative += ["tokens_in", "tokens_out", "tokens_cached"]
    given = _float(data.get("cost_usd"))
    out.update(tokens_in=tokens_in, tokens_out=tokens_out, tokens_cached=tokens_cached)
    if given > 0 or not (tokens_in or tokens_out):
        # The backend's cost (or nothing spent: nothing to estimate).
        out.update(cost_usd=given, cost_is_estimate=False)
        if backend == "acp" and given > 0:
            cumulative.append("cost_usd")  # ACP's cost is the session's so far
    else:
        cost, priced_as, unpriced = _estimated(backend, data, model, prices,
                                               (tokens_in, tokens_out, tokens_cached))
        out.update(cost_usd=cost, cost_is_estimate=True)
        if unpriced:
            out["unpriced"] = True
        if priced_as:
            out["priced_as"] = priced_as
        if "tokens_in" in cumulative:
            cumulative.append("cost_usd")  # priced from the thread's totals
    if cumulative:
        out["cumulative"] = cumulative
    else:
        out.pop("cumulative", None)
    return out


def _estimated(backend: str | None, data: Mapping[str, Any], model: str | None,
               prices: Mapping[str, Price], tokens: tuple[int, int, int],
               ) -> tuple[float, str | None, bool]:
    """(cost, the price entries used, whether some tokens had no price)."""
    models = data.get("models")
    if backend == "gemini" and isinstance(models, Mapping) and models and \
            all(isinstance(m, Mapping) for m in models.values()):
        # Gemini names each model a turn used (its routing call's is another one).
        cost, used, unpriced = 0.0, [], False
        for name, counts in models.items():
            found = price_of(str(name), prices)
            if found is None:
                unpriced = True
                continue
            used.append(found[0])
            cost += estimate(*tokens_of(backend, counts), found[1])
        return cost, ", ".join(sorted(set(used))) or None, unpriced
    found = price_of(model or _str(data.get("model")), prices)
    if found is None:
        return 0.0, None, True
    return estimate(*tokens, found[1]), found[0], False


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


# -- the fold's arithmetic -------------------------------------------------------------

class UsageFold:
    """One agent's usage events summed (the ledger keeps one per agent): each event's
    share added once, a cumulative field counted by what it grew since the last one
    of the same backend session."""

    def __init__(self) -> None:
        self.total = Usage()
        # (backend session) -> the totals seen so far of its fields, for the
        # cumulative ones to be counted by their growth.
        self._seen: dict[str, dict[str, float]] = {}

    def add(self, data: Mapping[str, Any], session: str | None) -> Usage:
        """Fold one usage event's data in (as ``account`` wrote it; one appended
        without it, by an older version, read from its ``input_tokens``,
        ``output_tokens``, ``cached_tokens`` and ``cost_usd``); returns its share."""
        if "tokens_in" not in data:
            tokens = tokens_of(None, data)
            values = {"tokens_in": tokens[0], "tokens_out": tokens[1],
                      "tokens_cached": tokens[2], "cost_usd": _float(data.get("cost_usd"))}
        else:
            values = {name: (_float(data.get(name)) if name == "cost_usd"
                             else _int(data.get(name))) for name in FIELDS}
        raw = data.get("cumulative")
        cumulative = {str(n) for n in raw} if isinstance(raw, list) else set()
        seen = self._seen.setdefault(session or "", dict.fromkeys(FIELDS, 0.0))
        share: dict[str, float] = {}
        for name in FIELDS:
            value = float(values[name])
            if name in cumulative:
                share[name] = max(value - seen[name], 0.0)
                seen[name] = max(seen[name], value)
            else:
                share[name] = value
                seen[name] += value
        spent = Usage(int(share["tokens_in"]), int(share["tokens_out"]),
                      int(share["tokens_cached"]), share["cost_usd"],
                      bool(data.get("cost_is_estimate")) and (share["tokens_in"] > 0
                                                             or share["tokens_out"] > 0),
                      bool(data.get("unpriced")) and (share["tokens_in"] > 0
                                                     or share["tokens_out"] > 0))
        self.total = self.total + spent
        return spent
