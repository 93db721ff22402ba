"""The Augmenter's decisions (gateway.proxy.augment): whether memory runs, what it asks for, which
sources fit, where they go, and that a failure leaves the request as the client sent it.

Two doubles, so each decision can be arranged exactly:
- `Recall` stands in for the memory service (gateway.memory.service.Memory): it answers `recall` with
  scripted sources and `image` with a stored image, records what it was asked, and can stall or fail.
  Retrieval itself (embedding, the store, ranking) is tested in tests/gateway/memory/.
- `Tokens` stands in for the TokenCounter (the upstream's /tokenize): one token per character, and a
  prompt count and context length the test sets. What vLLM counts is tested with vLLM in
  tests/gateway/memory/test_chat_memory.py.
Rendering of the records (gateway.proxy.quoting) is tested in test_augment_render.py; partial failures
between choosing sources and attaching their images, and what reaches a real upstream, in
test_augment_apply.py.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
from typing import Any

import pytest

from gateway.errors import InvalidRequest, Unavailable
from gateway.history.service import StoredImage
from gateway.images import LoadedImage
from gateway.memory.retrieval import RecallQuery, Source
from gateway.memory.store.base import SearchFilter
from gateway.proxy import augment, quoting
from gateway.proxy.augment import AugmentConfig, Augmenter, ChatTurn, MemoryUse, pop_options
from gateway.proxy.protocol import MemoryOptions
from gateway.proxy.tokens import ChatCount

BOUNDARY = "0123456789abcdef"
ASKED_ON = 1767225600.0  # 2026-01-01


def source(exchange_id: str, answer: str = "a login form", *, question: str = "what is on the screen?",
           image: str | None = None, score: float = 0.5) -> Source:
    return Source(exchange_id, score, question, answer, ASKED_ON, "m", image)


class Recall:
    """A double for the memory service's recall and history's images: scripted sources, one stored image
    per sha256, and a record of every call. `delay_s` stalls recall; `fails` is raised by it."""

    def __init__(self, sources: list[Source] | None = None, *, delay_s: float = 0.0,
                 fails: Exception | None = None) -> None:
        self.sources = sources if sources is not None else [source("past-1")]
        self.delay_s = delay_s
        self.fails = fails
        self.recalls: list[tuple[SearchFilter, RecallQuery, int]] = []
        self.images: list[tuple[str, str]] = []

    async def recall(self, flt: SearchFilter, query: RecallQuery, *, k: int) -> list[Source]:
        self.recalls.append((flt, query, k))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fails is not None:
            raise self.fails
        return self.sources[:k]

    async def image(self, tenant: str, sha256: str) -> StoredImage:
        self.images.append((tenant, sha256))
        return StoredImage(f"png of {sha256}".encode(), "image/png")


class Tokens:
    """A double for the TokenCounter: a token per character of a text; the chat's prompt counts
    `prompt` tokens of a `max_model_len` context, or cannot be counted (None, as without /tokenize)."""

    def __init__(self, prompt: int = 100, max_model_len: int | None = None, *, delay_s: float = 0.0) -> None:
        self.prompt = prompt
        self.max_model_len = max_model_len
        self.delay_s = delay_s
        self.chats: list[list[Any]] = []
        self.texts: list[str] = []

    async def count_chat(self, model: Any, messages: list[Any]) -> ChatCount | None:
        self.chats.append(copy.deepcopy(messages))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return ChatCount(self.prompt, self.max_model_len) if self.max_model_len is not None else None

    async def count_text(self, model: Any, text: str) -> int:
        self.texts.append(text)
        return len(text)


@pytest.fixture(autouse=True)
def fixed_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """One boundary every time, so the instructions and the frame have a known size."""
    monkeypatch.setattr(quoting.secrets, "token_hex", lambda n: BOUNDARY)


def record(s: Source) -> str:
    """The JSON record the model is shown of a source, at the default length."""
    return quoting.quote_source(s, AugmentConfig().source_chars).record


def fixed_tokens(same_user: bool = False) -> int:
    """What the double counts for the gateway's own words (the instructions and the frame)."""
    return len("\n".join((quoting.instructions(BOUNDARY, same_user=same_user), *quoting.frame(BOUNDARY))))


def payload(content: Any = "what is on the screen?", *, system: Any = None, **fields: Any) -> dict[str, Any]:
    messages: list[Any] = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": content})
    return {"model": "m", "messages": messages, **fields}


def turn(*, user: str | None = None, images: list[LoadedImage] | None = None,
         known: frozenset[str] = frozenset()) -> ChatTurn:
    return ChatTurn(tenant="acme", exchange_id="now", user=user, question="what is on the screen?",
                    images=images or [], known_answers=known)


def image(sha: str) -> LoadedImage:
    return LoadedImage(b"bytes of " + sha.encode(), "image/png", sha, 8, 8, None, "data:image/png;base64,AA")


def run(body: dict[str, Any], *, recall: Recall | None = None, tokens: Tokens | None = None,
        options: MemoryOptions | None = None, chat_turn: ChatTurn | None = None, max_images: int = 4,
        memory: bool = True, **config: Any) -> MemoryUse:
    """Augment `body` in place, as the chat service does; memory asked for unless `options` say."""
    augmenter = Augmenter(recall if memory else None, tokens or Tokens(), AugmentConfig(**config), max_images,
                          images=recall)
    return asyncio.run(augmenter.augment(body, chat_turn or turn(), options or MemoryOptions(memory=True)))


def user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "\n".join(p.get("text", "") for p in content)


# ---- whether memory runs ----------------------------------------------------------------------------


@pytest.mark.parametrize(("default", "asked", "reason"), [
    (False, None, "off"),  # the deployment's default: off
    (False, False, "off"),
    (False, True, "used"),
    (True, None, "used"),  # the deployment's default: on
    (True, False, "off"),  # a request can turn it off
    (True, True, "used"),
])
def test_memory_runs_only_when_asked_or_on_by_default(default: bool, asked: bool | None, reason: str) -> None:
    recall, body = Recall(), payload()
    use = run(body, recall=recall, options=MemoryOptions(memory=asked), default=default)
    assert use.reason == reason
    assert len(recall.recalls) == (1 if reason == "used" else 0)
    assert (body == payload()) is (reason == "off")


def test_no_memory_is_disabled_and_asks_nothing() -> None:
    tokens, body = Tokens(), payload()
    assert run(body, tokens=tokens, memory=False).reason == "disabled"
    assert run(body, tokens=tokens, memory=False, options=MemoryOptions()).reason == "off"
    assert body == payload() and tokens.chats == tokens.texts == []


@pytest.mark.parametrize("messages", [
    [{"role": "system", "content": "Be brief."}],
    [{"role": "assistant", "content": "hello"}],
    [],
    ["not a message"],
])
def test_without_a_user_message_there_is_nothing_to_recall_for(messages: list[Any]) -> None:
    recall, tokens = Recall(), Tokens()
    body = {"model": "m", "messages": messages}
    use = run(body, recall=recall, tokens=tokens)
    assert use == MemoryUse("no_sources")
    assert recall.recalls == [] and tokens.chats == []
    assert body == {"model": "m", "messages": messages}


def test_no_sources_found_counts_no_tokens_and_changes_nothing() -> None:
    recall, tokens, body = Recall([]), Tokens(), payload()
    assert run(body, recall=recall, tokens=tokens) == MemoryUse("no_sources")
    assert len(recall.recalls) == 1 and tokens.chats == tokens.texts == []
    assert body == payload()


# ---- what is asked of memory ------------------------------------------------------------------------


def test_the_search_is_the_tenants_without_the_requests_own_exchange() -> None:
    recall = Recall()
    own = image("cd" * 32)
    run(payload(), recall=recall, chat_turn=turn(user="alice", images=[own, image("ef" * 32)],
                                                 known=frozenset({"an earlier answer"})))
    ((flt, query, k),) = recall.recalls
    assert flt == SearchFilter("acme", user=None, exclude_exchanges=("now",))  # same_user is off by default
    assert query == RecallQuery("what is on the screen?", own.data, own.sha256, frozenset({"an earlier answer"}))
    assert k == AugmentConfig().k


@pytest.mark.parametrize(("configured", "asked", "user", "only"), [
    (False, None, "alice", None),
    (True, None, "alice", "alice"),
    (True, None, None, None),  # a request without `user` cannot be narrowed to its user
    (False, True, "alice", "alice"),
    (False, True, None, None),
    (True, False, "alice", None),
])
def test_same_user_narrows_only_when_the_request_has_a_user(configured: bool, asked: bool | None,
                                                             user: str | None, only: str | None) -> None:
    recall, body = Recall(), payload(system="Be brief.")
    use = run(body, recall=recall, chat_turn=turn(user=user), options=MemoryOptions(memory=True, same_user=asked),
              same_user=configured)
    assert use.reason == "used"
    assert recall.recalls[0][0].user == only
    # The model is told whose records they are only when they are sure to be this user's.
    system = body["messages"][0]["content"]
    assert system.endswith(quoting.instructions(BOUNDARY, same_user=only is not None))


@pytest.mark.parametrize(("configured", "asked", "k"), [(4, None, 4), (4, 2, 2), (2, 7, 7), (9, None, 9)])
def test_k_comes_from_the_request_else_the_config(configured: int, asked: int | None, k: int) -> None:
    recall = Recall([source(f"past-{i}") for i in range(10)])
    use = run(payload(), recall=recall, options=MemoryOptions(memory=True, k=asked), k=configured)
    assert recall.recalls[0][2] == k
    assert [c.n for c in use.cited] == list(range(1, k + 1))


# ---- which sources fit ------------------------------------------------------------------------------


def test_a_source_that_does_not_fit_is_skipped_and_later_ones_renumbered() -> None:
    long, short, shorter = source("long", "x " * 400), source("short", "a form"), source("shorter", "yes")
    per = augment._PER_SOURCE_TOKENS
    budget = len(record(short)) + per + len(record(shorter)) + per  # exactly the two short ones
    assert len(record(long)) + per > budget
    body = payload()
    use = run(body, recall=Recall([long, short, shorter]), max_tokens=budget)
    assert use.reason == "used"
    assert [(c.n, c.source.exchange_id) for c in use.cited] == [(1, "short"), (2, "shorter")]
    assert use.headers == {"x-visionrag-memory": "used", "x-visionrag-sources": "short,shorter"}
    text = user_text(body)
    assert f"[1] {record(short)}\n[2] {record(shorter)}\n" in text
    assert "x x x" not in text and "[3]" not in text


def test_one_token_over_the_budget_is_no_room_and_changes_nothing() -> None:
    only = source("only")
    fits = len(record(only)) + augment._PER_SOURCE_TOKENS
    assert run(payload(), recall=Recall([only]), max_tokens=fits).reason == "used"
    body = payload()
    assert run(body, recall=Recall([only]), max_tokens=fits - 1) == MemoryUse("no_room")
    assert body == payload()


@pytest.mark.parametrize(("fields", "answer"), [
    ({}, 512),  # nothing asked: the configured reserve
    ({"max_tokens": 100}, 100),
    ({"max_completion_tokens": 100}, 100),
    ({"max_completion_tokens": 100, "max_tokens": 10}, 100),  # the newer field wins
    ({"max_tokens": 0}, 512),
    ({"max_tokens": True}, 512),
    ({"max_tokens": "100"}, 512),
])
def test_prompt_answer_and_sources_stay_inside_the_context(fields: dict[str, Any], answer: int) -> None:
    """The budget within `max_model_len`: the prompt, the room for the answer, the gateway's words, the
    template's wrapping, then the sources. Exactly full fits; one token more does not."""
    only = source("only")
    needed = (100 + answer + fixed_tokens() + augment._WRAPPER_TOKENS
              + len(record(only)) + augment._PER_SOURCE_TOKENS)
    config = {"max_tokens": 1_000_000, "answer_reserve_tokens": 512}
    tokens = Tokens(prompt=100, max_model_len=needed)
    assert run(payload(**fields), recall=Recall([only]), tokens=tokens, **config).reason == "used"
    # The prompt counted is the client's own, before anything is added.
    assert tokens.chats == [payload()["messages"]]
    body = payload(**fields)
    tight = Tokens(prompt=101, max_model_len=needed)
    assert run(body, recall=Recall([only]), tokens=tight, **config).reason == "no_room"
    assert body == payload(**fields)


def test_the_smaller_of_max_tokens_and_the_context_room_limits_the_sources() -> None:
    sources = [source(f"past-{i}") for i in range(3)]
    each = len(record(sources[0])) + augment._PER_SOURCE_TOKENS
    room = 100 + 512 + fixed_tokens() + augment._WRAPPER_TOKENS
    roomy = Tokens(prompt=100, max_model_len=room + 3 * each)
    assert len(run(payload(), recall=Recall(sources), tokens=roomy, max_tokens=2 * each).cited) == 2
    assert len(run(payload(), recall=Recall(sources), tokens=roomy, max_tokens=10 * each).cited) == 3
    narrow = Tokens(prompt=100, max_model_len=room + each)
    assert len(run(payload(), recall=Recall(sources), tokens=narrow, max_tokens=10 * each).cited) == 1


def test_the_gateways_own_words_are_counted_once_per_request() -> None:
    sources = [source("a"), source("b", "another answer")]
    tokens = Tokens()
    run(payload(), recall=Recall(sources), tokens=tokens)
    instructions = quoting.instructions(BOUNDARY, same_user=False)
    assert sorted(tokens.texts) == sorted(["\n".join((instructions, *quoting.frame(BOUNDARY))),
                                           record(sources[0]), record(sources[1])])


# ---- failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("recall", "tokens", "reason"), [
    (Recall(delay_s=5), Tokens(), "timeout"),
    (Recall(), Tokens(delay_s=5), "timeout"),  # counting is inside the time budget too
    (Recall(fails=RuntimeError("store is down")), Tokens(), "unavailable"),
    (Recall(fails=Unavailable("memory is unavailable")), Tokens(), "unavailable"),
], ids=["recall-stalls", "counting-stalls", "recall-raises", "recall-refuses"])
def test_a_failed_or_slow_memory_leaves_the_request_as_sent(recall: Recall, tokens: Tokens, reason: str) -> None:
    body = payload([{"type": "text", "text": "what is on the screen?"}], system="Be brief.")
    sent = copy.deepcopy(body)
    use = run(body, recall=recall, tokens=tokens, timeout_s=0.05)
    assert use == MemoryUse(reason)
    assert use.headers == {"x-visionrag-memory": reason}
    assert body == sent


# ---- where the sources go ---------------------------------------------------------------------------


@pytest.mark.parametrize(("system", "expected"), [
    ("Be brief.", "Be brief.\n\n{instructions}"),
    ("", "{instructions}"),
    ([{"type": "text", "text": "Be brief."}],
     [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "\n\n{instructions}"}]),
])
def test_the_instructions_join_the_clients_system_message(system: Any, expected: Any) -> None:
    body = payload(system=system)
    client_messages = list(body["messages"])
    run(body, recall=Recall())
    instructions = quoting.instructions(BOUNDARY, same_user=False)
    if isinstance(expected, str):
        expected = expected.format(instructions=instructions)
    else:
        expected = [{**p, "text": p["text"].format(instructions=instructions)} for p in expected]
    assert body["messages"][0] == {"role": "system", "content": expected}
    assert len(body["messages"]) == 2
    assert client_messages[0] == {"role": "system", "content": system}  # the client's object is untouched


def test_without_a_system_message_one_is_put_first() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                       {"role": "user", "content": "what is on the screen?"}]}
    run(body, recall=Recall())
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == quoting.instructions(BOUNDARY, same_user=False)
    # Only the latest user turn carries the sources.
    assert body["messages"][1] == {"role": "user", "content": "hi"}
    assert body["messages"][3]["content"].startswith(f"<memory-{BOUNDARY}>\n[1] ")


def test_a_string_question_stays_a_string_after_the_block() -> None:
    body = payload("what is on the screen?")
    run(body, recall=Recall([source("past-1")]))
    block = quoting.block(BOUNDARY, [f"[1] {record(source('past-1'))}"])
    assert body["messages"][-1] == {"role": "user", "content": f"{block}\n\nwhat is on the screen?"}


def test_a_list_question_gets_the_block_as_its_first_part() -> None:
    own = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
           {"type": "text", "text": "what is on the screen?"}]
    body = payload(copy.deepcopy(own))
    run(body, recall=Recall([source("past-1")]))
    block = quoting.block(BOUNDARY, [f"[1] {record(source('past-1'))}"])
    assert body["messages"][-1]["content"] == [{"type": "text", "text": block}, *own]


def test_what_was_cited_is_what_the_model_was_shown() -> None:
    long_question = "which table? " * 200
    cited_source = source("past-1", "b" * 5000, question=long_question, score=0.123456789)
    use = run(payload(), recall=Recall([cited_source]), source_chars=100)
    (cited,) = use.cited
    assert (cited.n, cited.source) == (1, cited_source)
    assert cited.question == quoting.quote(long_question, 100) and cited.excerpt == quoting.quote("b" * 5000, 100)
    assert len(cited.excerpt) <= 102
    assert use.journal() == {"reason": "used", "sources": [{"n": 1, "exchange_id": "past-1", "score": 0.123457}]}


# ---- attached images --------------------------------------------------------------------------------


def image_parts(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, data URL) of each attached source image, in order."""
    content = body["messages"][-1]["content"]
    return [(label["text"], part["image_url"]["url"])
            for label, part in itertools.pairwise(content)
            if part.get("type") == "image_url" and label.get("text", "").startswith("Image of source")]


def data_url_of(sha: str) -> str:
    return "data:image/png;base64," + base64.b64encode(f"png of {sha}".encode()).decode()


def test_source_images_are_attached_after_the_block_when_configured() -> None:
    a, b = "aa" * 32, "bb" * 32
    recall = Recall([source("p1", image=a), source("p2"), source("p3", image=b)])
    body = payload("what is on the screen?")
    run(body, recall=recall, attach_images=True)
    content = body["messages"][-1]["content"]
    assert content[0]["text"].startswith(f"<memory-{BOUNDARY}>")
    assert image_parts(body) == [("Image of source [1]:", data_url_of(a)), ("Image of source [3]:", data_url_of(b))]
    assert content[-1] == {"type": "text", "text": "what is on the screen?"}
    assert recall.images == [("acme", a), ("acme", b)]


def test_images_are_not_attached_unless_configured() -> None:
    recall = Recall([source("p1", image="aa" * 32)])
    body = payload("what is on the screen?")
    run(body, recall=recall)
    assert isinstance(body["messages"][-1]["content"], str) and recall.images == []


def test_attached_images_stay_within_the_per_request_limit() -> None:
    shas = ["a1" * 32, "b2" * 32, "c3" * 32]
    recall = Recall([source(f"p{i}", image=sha) for i, sha in enumerate(shas)])
    body = payload([{"type": "text", "text": "what is on the screen?"}])
    # The request's own image takes one of the three places.
    run(body, recall=recall, chat_turn=turn(images=[image("ff" * 32)]), max_images=3, attach_images=True)
    assert [label for label, _ in image_parts(body)] == ["Image of source [1]:", "Image of source [2]:"]
    assert [sha for _, sha in recall.images] == shas[:2]  # the third is not even read

    full = Recall([source("p1", image=shas[0])])
    body = payload([{"type": "text", "text": "what is on the screen?"}])
    use = run(body, recall=full, chat_turn=turn(images=[image("ff" * 32)]), max_images=1, attach_images=True)
    assert use.reason == "used" and image_parts(body) == [] and full.images == []


def test_an_image_the_turn_already_carries_is_not_attached_again() -> None:
    own, other = "ab" * 32, "cd" * 32
    recall = Recall([source("same-image", image=own), source("other-image", image=other)])
    body = payload([{"type": "text", "text": "what is on the screen?"}])
    run(body, recall=recall, chat_turn=turn(images=[image(own)]), attach_images=True)
    assert image_parts(body) == [("Image of source [2]:", data_url_of(other))]
    assert recall.images == [("acme", other)]


# ---- the `visionrag` request field ------------------------------------------------------------------


def test_options_are_taken_out_of_the_request() -> None:
    body = {"model": "m", "visionrag": {"memory": True, "k": 3, "same_user": False}}
    assert pop_options(body) == MemoryOptions(memory=True, k=3, same_user=False)
    assert body == {"model": "m"}  # the upstream never sees it
    assert pop_options(body) == MemoryOptions() == MemoryOptions(memory=None, k=None, same_user=None)
    assert pop_options({"visionrag": None}) == MemoryOptions()


@pytest.mark.parametrize(("raw", "param"), [
    ({"k": 0}, "visionrag.k"),
    ({"k": 21}, "visionrag.k"),
    ({"k": "many"}, "visionrag.k"),
    ({"memory": "maybe"}, "visionrag.memory"),
    ({"same_user": [1]}, "visionrag.same_user"),
    ({"colour": "blue"}, "visionrag.colour"),
    ("yes", "visionrag"),
    ([True], "visionrag"),
])
def test_invalid_options_name_the_field(raw: Any, param: str) -> None:
    body = {"model": "m", "visionrag": raw}
    with pytest.raises(InvalidRequest) as refused:
        pop_options(body)
    error = refused.value
    assert (error.status, error.param, error.code) == (400, param, "invalid_parameter")
    assert error.message.startswith(f"{param}: ") and len(error.message) > len(param) + 2
    assert "visionrag" not in body
