"""One function of the app as the local host sees it, and how it is invoked.

The host reads each function's trigger declaration (``get_trigger().get_dict_repr()``) and calls
the user's Python function with the trigger object under the trigger's binding name, plus a
minimal ``context`` when the function asks for one - as the Python worker does in Azure.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.settings import Settings

_EXPRESSION = re.compile(r"%([^%]+)%")


def resolve_expression(settings: Settings, text: str) -> str:
    """Replace every ``%APP_SETTING%`` in ``text`` (whole value or inside a path) by its value.

    Names the :class:`Settings` know come from there; any other name is read from the environment
    (app settings are environment variables in Azure).
    """
    def one(match: re.Match[str]) -> str:
        try:
            return settings.resolve(match.group(0))
        except KeyError:
            value = os.environ.get(match.group(1))
            if value is None:
                raise ValueError(f"app setting {match.group(1)} (used in {text!r}) "
                                 "is not defined") from None
            return value
    return _EXPRESSION.sub(one, text)


@dataclass(frozen=True)
class InvocationContext:
    """The subset of ``azure.functions.Context`` the local host provides."""

    invocation_id: str
    function_name: str
    function_directory: str = ""
    trace_context: Any = None
    retry_context: Any = None


@dataclass(frozen=True)
class FunctionSpec:
    """A function of the app: its name, trigger declaration and the Python callable."""

    name: str
    trigger_type: str
    binding_name: str
    trigger: Mapping[str, Any]
    user_function: Callable[..., Any]
    wants_context: bool
    directory: str = ""
    extra_bindings: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_function(cls, function: Any) -> FunctionSpec:
        trigger = dict(function.get_trigger().get_dict_repr())
        user_function = function.get_user_function()
        extra = tuple(b.get_dict_repr() for b in function.get_bindings()
                      if b.get_dict_repr().get("name") != trigger.get("name"))
        return cls(name=function.get_function_name(), trigger_type=str(trigger["type"]),
                   binding_name=str(trigger["name"]), trigger=trigger, user_function=user_function,
                   wants_context=_wants_context(user_function),
                   directory=_directory(user_function), extra_bindings=extra)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    def arguments(self, value: Any) -> dict[str, Any]:
        kwargs = {self.binding_name: value}
        if self.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id=str(uuid.uuid4()), function_name=self.name,
                function_directory=self.directory)
        return kwargs

    def invoke(self, value: Any) -> Any:
        """Call the function from a worker thread (coroutines run on their own event loop)."""
        result = self.user_function(**self.arguments(value))
        if inspect.isawaitable(result):
            return asyncio.run(_await(result))
        return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _directory(fn: Callable[..., Any]) -> str:
    try:
        return str(Path(inspect.getfile(fn)).parent)
    except TypeError:
        return ""


def _wants_context(fn: Callable[..., Any]) -> bool:
    """The Python worker passes the invocation context to a parameter named ``context``."""
    try:
        return "context" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class FunctionStats:
    """How often one function ran and how it ended."""

    invocations: int = 0
    successes: int = 0
    failures: int = 0
    poisoned: int = 0   # queue messages moved to the poison queue / blobs given up on


@dataclass
class StatsBook:
    """Thread-safe counters per function name."""

    _counts: dict[str, FunctionStats] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, function: str, **deltas: int) -> None:
        with self._lock:
            current = self._counts.get(function, FunctionStats())
            self._counts[function] = replace(
                current, **{k: getattr(current, k) + v for k, v in deltas.items()})

    def snapshot(self) -> dict[str, FunctionStats]:
        with self._lock:
            return dict(self._counts)
