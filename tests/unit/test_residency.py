"""distorch/logic/residency.py: which server a prompt goes to, on byte-sized fixtures."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distorch.logic.residency import Candidate, FileIdentity, choose, prompt_files, residency_score

A = FileIdentity("diffusion_models", "a.safetensors", 1000, 1)
B = FileIdentity("diffusion_models", "b.safetensors", 2000, 1)
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
    assert choice.scores == {"http://w1": 0, "http://w2": 1000}


def test_a_changed_file_is_not_held():
    candidates = [Candidate("http://w1", {A_CHANGED: 1000}, queue_remaining=3), Candidate("http://w2", {})]
    choice = choose(candidates, [A], least_busy)
    assert choice.fallback and choice.url == "http://w2" and "no server holds" in choice.reason


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
