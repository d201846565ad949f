"""The named models (LLM_MODELS) and the chain that answers for each: the model, then the default, then the fallbacks.

One `Member` per model, shared by every chain it is in: its circuit breaker and in-flight answers are the
server's, whichever request named it.
"""

from __future__ import annotations

from backend.adapters.llm.fallback import FailureHook, FallbackHook, FallbackLLM, Member
from backend.adapters.llm.switching import SwapGroup


class UnknownModelError(LookupError):
    """A request named a model that is not configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model {name[:100]!r}; the models here are {', '.join(known)} (LLM_MODELS)")
        self.known = known


class ModelRouter:
    def __init__(
        self,
        members: list[Member],
        *,
        default: str,
        fallbacks: list[str],
        groups: list[SwapGroup],
        first_token_timeout_s: float,
        total_timeout_s: float,
        on_failure: FailureHook | None = None,
        on_fallback: FallbackHook | None = None,
    ) -> None:
        self.members = members
        self.default = default
        self.groups = groups
        self.first_token_timeout_s = first_token_timeout_s
        by_name = {m.name: m for m in members}
        self._chains: dict[str, FallbackLLM] = {}
        for member in members:
            names = dict.fromkeys([member.name, default, *fallbacks])  # each model once, in this order
            chain = [by_name[n] for n in names]
            self._chains[member.name] = FallbackLLM(
                chain, first_token_timeout_s=first_token_timeout_s, total_timeout_s=total_timeout_s,
                on_failure=on_failure, on_fallback=on_fallback,
            )  # fmt: skip

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def check(self, name: str | None) -> str:
        """The model a request gets: `name`, or the default; UnknownModelError for a name not configured."""
        if name is None:
            return self.default
        if name not in self._chains:
            raise UnknownModelError(name, self.names)
        return name

    def chain(self, name: str | None = None) -> FallbackLLM:
        return self._chains[self.check(name)]
