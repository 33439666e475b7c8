"""Every conversation declares its steps; a jump to an undeclared step fails here, not in chat.

At run time an undeclared name raises at once (``@conv.step``, ``step.goto``, ``start``); these
tests also read the handler modules' source for literal jump targets, so a typo in a branch no
unit test walks through is still caught.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Iterator
from types import ModuleType
from typing import Any, cast

import pytest

from bot import conversation
from bot.app import HANDLER_MODULES, collect_conversations
from bot.conversation import (
    CHOICE,
    PHOTO,
    TEXT,
    Ask,
    Conversation,
    Incoming,
    Progress,
    Step,
    text_step,
)
from handlers.cases import accidents, hazards

# Calls that name the step to go to: step.goto("x"), step.ask("x", template, …), and helpers
# that take the step first: _ask(step, "x", …), a report flow's report.ask(step, "x", …).
JUMPS = frozenset({"goto", "ask", "_ask"})


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def _target(node: ast.Call) -> str | None:
    """The literal step name of a jump: the first argument, or the second after the step."""
    args = node.args
    after_step = bool(args) and isinstance(args[0], ast.Name) and args[0].id == "step"
    index = 1 if after_step or _call_name(node) == "_ask" else 0
    arg = args[index] if len(args) > index else None
    return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def jump_targets(fn: Any) -> Iterator[tuple[str, int]]:
    """(step name, line) of each literal jump in fn's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node) in JUMPS:
            target = _target(node)
            if target is not None:
                yield target, node.lineno


def module_targets(module: ModuleType) -> Iterator[tuple[Conversation, str, int]]:
    """Literal step names a module gives one of its conversations by name:
    ``conversation.start(ctx, conv, "x")``, ``conv.progress("x")``, ``conv.ask("x")``."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except OSError:
        return  # an empty package __init__: nothing to read
    convs = {k: v for k, v in vars(module).items() if isinstance(v, Conversation)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name == "start" and len(node.args) >= 3:
            conv_arg, state_arg = node.args[1], node.args[2]
        elif name in ("progress", "ask", "step") and isinstance(node.func, ast.Attribute):
            conv_arg, state_arg = node.func.value, node.args[0] if node.args else None
        else:
            continue
        if (
            isinstance(conv_arg, ast.Name)
            and conv_arg.id in convs
            and isinstance(state_arg, ast.Constant)
            and isinstance(state_arg.value, str)
        ):
            yield convs[conv_arg.id], state_arg.value, node.lineno


def declared(conv: Conversation) -> set[str]:
    return {a.name for a in conv.steps}


def test_every_declared_step_has_a_function_and_every_function_is_declared() -> None:
    convs = collect_conversations()
    names = [c.name for c in convs]
    assert len(names) == len(set(names)), "two conversations share a name"
    assert {"visit", "meeting", "training", "hazard", "hazard_submit", "accident"} <= set(names)
    assert {"escalate", "notice", "broadcast", "remind"} <= set(names)
    for conv in convs:
        assert conv.missing() == [], f"{conv.name}: declared without a function"
        assert set(conv.handlers) <= declared(conv), f"{conv.name}: undeclared functions"


def test_literal_jumps_in_step_functions_name_declared_steps() -> None:
    checked = 0
    for conv in collect_conversations():
        for state, fn in conv.handlers.items():
            for target, line in jump_targets(fn):
                checked += 1
                assert target in declared(conv), (
                    f"{conv.name}.{state} ({fn.__module__}.{fn.__qualname__}, line {line} of "
                    f"the function) goes to undeclared step {target!r}"
                )
    # Shared kinds of step (text_step, a report flow's text/choice/photos) check the names they
    # are given at import; what is left for this scan is the steps written out by hand.
    assert checked >= 8, "the scan found hardly any jumps: has the helper been renamed?"


def test_literal_step_names_in_handler_modules_are_declared() -> None:
    checked = 0
    for module in HANDLER_MODULES:
        for conv, target, line in module_targets(module):
            checked += 1
            assert target in declared(conv), (
                f"{module.__name__} line {line}: {conv.name} has no step {target!r}"
            )
    assert checked > 20


def test_the_scan_catches_a_typo() -> None:
    async def typo(step: Step, msg: Incoming) -> None:
        if msg.text:
            step.goto("confrim")
        else:
            hazards.report.ask(step, "wehre", again=True)

    assert [t for t, _ in jump_targets(typo)] == ["confrim", "wehre"]


def test_undeclared_names_fail_at_once() -> None:
    conv = Conversation("demo", steps=[Ask("name", TEXT), Ask("photos", PHOTO)])
    with pytest.raises(ValueError, match="declares no step 'nmae'"):
        conv.step("nmae")
    with pytest.raises(ValueError, match="function already"):
        conv.step("name")(_noop)
        conv.step("name")(_noop)
    with pytest.raises(ValueError, match="distinct"):
        Conversation("twice", steps=[Ask("a", TEXT), Ask("a", TEXT)])
    with pytest.raises(ValueError, match="not declared as TEXT"):
        text_step(conv, "photos", key="x", then="name", ask=lambda *a, **k: None)
    with pytest.raises(ValueError, match="declares no step 'nxet'"):
        text_step(Conversation("t", steps=[Ask("a", TEXT)]), "a", key="a", then="nxet", ask=print)
    step = Step(ctx=cast(Any, None), row=cast(Any, None), data={}, state="name", conversation=conv)
    with pytest.raises(ValueError, match="declares no step 'confirm'"):
        step.goto("confirm")
    assert step.state == "name"
    with pytest.raises(ValueError, match="declares no step 'photo'"):
        # start() checks the name before it touches the context or the database.
        coro = conversation.start(cast(Any, None), conv, "photo")
        coro.send(None)


def test_a_conversation_missing_a_function_is_refused_by_the_hook() -> None:
    conv = Conversation("half", steps=[Ask("a", TEXT), Ask("b", CHOICE)])
    conv.step("a")(_noop)
    with pytest.raises(ValueError, match=r"no function for \['b'\]"):
        conversation.ConversationHook([conv])


def test_progress_comes_from_the_declared_steps() -> None:
    report = hazards.report_conv
    assert report.progress("enterprise") is None  # asked only when the room does not say it
    assert report.progress("what") == Progress(1, 9)
    assert report.progress("photos") == Progress(5, 9)
    assert str(report.progress("deadline")) == "9/9"
    acc = accidents.report_conv
    assert [str(acc.progress(a.name)) for a in acc.steps if a.counted] == [
        f"{i}/7" for i in range(1, 8)
    ]
    with pytest.raises(ValueError):
        report.progress("grades")


async def _noop(step: Step, msg: Incoming) -> None:
    return None
