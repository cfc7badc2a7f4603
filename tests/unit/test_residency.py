"""distorch/logic/residency.py: which server a prompt goes to, on byte-sized fixtures."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distorch.logic.residency import (Candidate, FileIdentity, choose, held_from_document, prompt_files,
                                      queue_from_document, residency_score)

A = FileIdentity("diffusion_models", "a.safetensors", 1000, 1)
B = FileIdentity("diffusion_models", "b.safetensors", 2000, 1)
C = FileIdentity("diffusion_models", "c.safetensors", 3000, 1)
A_CHANGED = FileIdentity("diffusion_models", "a.safetensors", 1000, 2)  # same name, written again
GIB = 2**30


def least_busy(candidates):
    """Distributed's own choice, as the fallback: the first of the least-busy candidates."""
    return min(candidates, key=lambda c: c.queue_remaining).url


def test_the_files_a_prompt_loads_come_from_its_loaders_literal_inputs():
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "10": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors", "model": ["4", 0]}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": ["99", 0]}},  # a link: not known yet
        "3": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5.safetensors", "clip_name2": "l.sft"}},
        "5": {"class_type": "KSampler", "inputs": {"seed": 1}},
        "6": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "flux-q8.gguf"}},
        "7": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},  # again
    }
    assert prompt_files(prompt) == [
        ("text_encoders", "t5.safetensors"), ("text_encoders", "l.sft"), ("checkpoints", "sd15.safetensors"),
        ("unet_gguf", "flux-q8.gguf"), ("loras", "style.safetensors")]
    assert prompt_files("not a prompt") == [] and prompt_files({"1": "garbage"}) == []


def test_the_server_holding_the_prompts_files_wins():
    candidates = [Candidate("http://w1", {B: 2000}), Candidate("http://w2", {A: 1000})]
    choice = choose(candidates, [A], least_busy)
    assert (choice.url, choice.fallback) == ("http://w2", False)
    assert "holds 0.00 GiB of the prompt's 1 model file(s)" in choice.reason
    assert choice.scores == {"http://w1": -2000, "http://w2": 1000}  # w1 would have to let B go


def test_a_changed_file_is_not_held():
    candidates = [Candidate("http://w1", {A_CHANGED: 1000}, queue_remaining=3), Candidate("http://w2", {})]
    choice = choose(candidates, [A], least_busy)
    assert choice.url == "http://w2" and "no server holds" in choice.reason and "least else" in choice.reason


def test_a_long_queue_outweighs_what_is_held():
    candidates = [Candidate("http://w1", {A: 3 * GIB}, queue_remaining=2), Candidate("http://w2", {A: 1 * GIB})]
    assert choose(candidates, [A], least_busy, penalty_bytes=2 * GIB).url == "http://w2"
    assert residency_score(candidates[0], [A], 2 * GIB) == -GIB


@pytest.mark.parametrize("candidates, words", [
    ([Candidate("http://w1", None), Candidate("http://w2", None, 1)], "no server reports"),
    ([Candidate("http://w1", {A: 10}), Candidate("http://w2", {A: 10})], "2 servers tie"),
])
def test_residency_that_does_not_decide_falls_back_to_the_callers_choice(candidates, words):
    choice = choose(candidates, [A], least_busy)
    assert choice.fallback and choice.url == "http://w1" and words in choice.reason


def test_a_server_without_the_pack_is_scored_by_nobody_and_still_chosen_by_the_fallback():
    candidates = [Candidate("http://bare", None), Candidate("http://w2", {B: 10}, queue_remaining=1)]
    choice = choose(candidates, [A], least_busy)
    assert choice.fallback and choice.url == "http://bare" and "http://bare" not in choice.scores


def test_no_candidates_is_an_error_and_no_files_falls_back():
    with pytest.raises(ValueError, match="no candidate"):
        choose([], [A], least_busy)
    assert choose([Candidate("http://w1", {A: 1})], [], least_busy).reason == "the prompt names no model file"


files = st.sampled_from([A, B, A_CHANGED])
candidate_lists = st.lists(
    st.builds(Candidate, st.sampled_from(["http://w1", "http://w2", "http://w3", "http://w4"]),
              st.one_of(st.none(), st.dictionaries(files, st.integers(0, 10 * GIB), max_size=3)),
              st.integers(0, 5)),
    min_size=1, max_size=4, unique_by=lambda c: c.url)


@given(candidate_lists, st.lists(files, max_size=3), st.integers(0, 4 * GIB))
def test_the_choice_is_a_candidate_and_beats_every_other_score(candidates, wanted, penalty):
    choice = choose(candidates, wanted, least_busy, penalty_bytes=penalty)
    assert choice.url in {c.url for c in candidates}
    if not choice.fallback:
        best = choice.scores[choice.url]
        assert all(score < best for url, score in choice.scores.items() if url != choice.url)


@given(candidate_lists, st.lists(files, min_size=1, max_size=3), st.integers(1, GIB))
def test_holding_more_of_the_prompt_never_loses_the_choice(candidates, wanted, extra):
    choice = choose(candidates, wanted, least_busy)
    if choice.fallback:
        return
    winner = next(c for c in candidates if c.url == choice.url)
    richer = dict(winner.held)
    richer[wanted[0]] = richer.get(wanted[0], 0) + extra
    again = choose([Candidate(c.url, richer, c.queue_remaining) if c is winner else c for c in candidates],
                   wanted, least_busy)
    assert again.url == choice.url and not again.fallback


def test_a_prompt_nobody_holds_goes_where_it_pushes_out_the_least():
    """Two model sets on three servers: B's prompt must not evict A from the server holding it."""
    candidates = [Candidate("http://w1", {A: 5 * GIB}), Candidate("http://w2", {}), Candidate("http://m", {})]
    choice = choose(candidates, [B], least_busy)
    assert choice.fallback and choice.url in ("http://w2", "http://m") and "2 hold the least else" in choice.reason
    candidates = [Candidate("http://w1", {A: 5 * GIB}), Candidate("http://w2", {}), Candidate("http://m", {B: GIB})]
    choice = choose(candidates, [C], least_busy)
    assert not choice.fallback and choice.url == "http://w2"


def test_when_every_server_is_empty_the_callers_choice_stands():
    candidates = [Candidate("http://w1", {}), Candidate("http://w2", {})]
    choice = choose(candidates, [A], lambda cs: cs[-1].url)
    assert choice.fallback and choice.url == "http://w2" and choice.reason == "no server holds the prompt's model files"


def test_a_residency_document_gives_bytes_per_file():
    document = {"models": [
        {"files": [{"folder": "checkpoints", "name": "a.safetensors", "size": 10, "mtime_ns": 5}], "bytes": 700},
        {"files": [{"folder": "checkpoints", "name": "a.safetensors", "size": 10, "mtime_ns": 5}], "bytes": 300},
        {"files": [], "bytes": 50}], "queue_remaining": 2}
    assert held_from_document(document) == {FileIdentity("checkpoints", "a.safetensors", 10, 5): 1000}
    assert queue_from_document(document) == 2


@pytest.mark.parametrize("garbage", [None, "<html>", [], {"models": "x"}, {"models": [{"files": [], "bytes": -1}]},
                                     {"models": [{"files": [{"folder": "x"}], "bytes": 1}]},
                                     {"models": [{"files": [1], "bytes": 1}]}, {"models": [{"bytes": 1}]},
                                     {"models": [{"files": [], "bytes": True}]}])
def test_garbage_is_refused(garbage):
    with pytest.raises(ValueError):
        held_from_document(garbage)


@pytest.mark.parametrize("document", [{}, {"queue_remaining": -1}, {"queue_remaining": "3"}, None,
                                      {"queue_remaining": True}])
def test_a_queue_length_that_is_not_one_counts_as_empty(document):
    assert queue_from_document(document) == 0


def test_a_set_sharing_encoders_does_not_pull_the_other_sets_prompts():
    """Flux dev and schnell share their text encoders: the server holding dev and the encoders
    must not win schnell's prompt over an empty server, or the two UNets push each other out."""
    encoder = FileIdentity("text_encoders", "t5.safetensors", 9, 1)
    dev, schnell = (FileIdentity("diffusion_models", n, 12, 1) for n in ("dev.safetensors", "schnell.safetensors"))
    holder = Candidate("http://w1", {encoder: 9 * GIB, dev: 12 * GIB})
    empty = Candidate("http://w2", {})
    assert residency_score(holder, [encoder, schnell]) == 9 * GIB - 12 * GIB
    choice = choose([holder, empty], [encoder, schnell], least_busy)
    assert choice.url == "http://w2"
    again = choose([holder, Candidate("http://w2", {encoder: 9 * GIB, schnell: 12 * GIB})], [encoder, dev], least_busy)
    assert again.url == "http://w1" and not again.fallback


def test_what_would_make_room_is_named():
    other = FileIdentity("diffusion_models", "small.safetensors", 1, 1)
    shared = FileIdentity("text_encoders", "clip.safetensors", 1, 1)
    choice = choose([Candidate("http://w1", {shared: 4 * GIB, other: GIB}), Candidate("http://w2", {})],
                    [shared, A], least_busy)
    assert choice.url == "http://w1" and "1.00 GiB of other models would make room" in choice.reason
