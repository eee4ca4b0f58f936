"""The text modality: tokenizer, grammar and lexicon, the Diffusion-LM hooks, the JSONL loader, metrics, and a
``smoke`` run end to end through the core pipeline."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from crossguide import registry
from crossguide.bench import bench
from crossguide.cli import main as cli
from crossguide.conditions import NULL
from crossguide.errors import UsageError
from crossguide.modalities.text import diversity as D
from crossguide.modalities.text import lm as LM
from crossguide.modalities.text import restaurants as R
from crossguide.modalities.text import tokenizer as T
from crossguide.modalities.text.grammar import join
from crossguide.modalities.text.jsonl import jsonl
from crossguide.modalities.text.model import EmbeddingDiffusionLM

TEXT = registry.get("text")


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], dict[str, list[int]]]:
    return R.sentences(400, 0.1, 0.0, random.Random(0))  # omissions, no swapped values


@pytest.fixture(scope="module")
def splits():
    return TEXT.load_dataset("restaurants", "smoke", None, 0)


def test_tokenizer_round_trip(corpus, splits):
    texts, _ = corpus
    tok = T.from_info(splits.train.info)
    ids, truncated = T.encode(tok, texts, 32)
    assert truncated == 0 and ids.shape == (400, 32)
    assert T.decode(tok, ids) == texts
    assert [len(s) for s in T.tokens(tok, ids)] == [T.token_count(t) for t in texts]
    unknown, _ = T.encode(tok, ["Zizzi serves haggis."], 8)
    assert T.decode(tok, unknown) == ["Zizzi serves [UNK]."]
    assert T.wrap(splits.train.info["tokenizer"]).get_vocab() == tok.get_vocab()  # JSON string round trip


def test_compact_moves_pads_to_the_end():
    ids = torch.tensor([[5, 0, 6, 0, 7, 0], [0, 0, 3, 4, 0, 0]])
    assert T.compact(ids, 0).tolist() == [[5, 6, 7, 0, 0, 0], [3, 4, 0, 0, 0, 0]]


def test_grammar_accepts_the_corpus_and_rejects_corruptions(corpus, splits):
    texts, _ = corpus
    tok = T.from_info(splits.train.info)
    sentences = T.tokens(tok, T.encode(tok, texts, 32)[0])
    assert all(R.GRAMMAR.accepts(s) for s in sentences)
    rng = random.Random(1)
    for s in sentences[:100]:
        assert not R.GRAMMAR.accepts(s[:-1])  # no final period
        i = rng.randrange(len(s))
        assert not R.GRAMMAR.accepts(s[: i + 1] + s[i:])  # a word said twice
        shuffled = rng.sample(s, len(s))
        assert shuffled == s or not R.GRAMMAR.accepts(shuffled)
    assert R.GRAMMAR.accepts("Zizzi is a pub near the park .".split())
    assert not R.GRAMMAR.accepts("Zizzi is an pub near the park .".split())  # article agreement
    assert join(["Zizzi", ",", "a", "pub", "."]) == "Zizzi, a pub."


def test_lexicon_is_exact_on_the_grammar(corpus):
    texts, labels = corpus
    all_keywords = {w for values in R.KEYWORDS.values() for ws in values.values() for w in ws}
    filler_words = {w for phrases in R.FILLERS.values() for p in phrases for w in p.split()}
    template_words = {w for p in R.MAINS + R.FOLLOWS for w in p.split() if not w.startswith("{")}
    assert not all_keywords & (filler_words | template_words)
    for attr, forms in R.PHRASES.items():
        for by_value in forms.values():
            for value, phrases in by_value.items():
                for p in phrases:
                    assert R.extract(p.split())[attr] == R.ATTRIBUTES[attr].index(value), p
    for i, text in enumerate(texts):
        found = R.extract(_words(text))
        assert found == {a: labels[a][i] for a in R.ATTRIBUTES}  # an unsaid attribute is labelled NULL


def _words(text: str) -> list[str]:
    return [w for w, _ in T.PRE_TOKENIZER.pre_tokenize_str(text)]


def test_corpus_noise_rates_match_omit_and_swap():
    texts, labels = R.sentences(3000, 0.1, 0.2, random.Random(0))
    unsaid = swapped = said = 0
    for i, text in enumerate(texts):
        found = R.extract(_words(text))
        for a in R.ATTRIBUTES:
            if labels[a][i] == NULL:
                assert found[a] == NULL
                unsaid += 1
            else:
                assert found[a] != NULL
                said += 1
                swapped += found[a] != labels[a][i]
    assert abs(unsaid / (3 * len(texts)) - 0.1) < 0.02
    assert abs(swapped / said - 0.2) < 0.02
    _, kept = R.sentences(3000, 0.1, 0.2, random.Random(0), label_unsaid=True)  # the same sentences
    assert all(v != NULL for values in kept.values() for v in values)
    assert all(k == v for a in kept for k, v in zip(kept[a], labels[a], strict=True) if v != NULL)


def test_restaurants_omissions_keeps_every_label_and_states_no_wrong_value():
    splits = TEXT.load_dataset("restaurants-omissions", "smoke", None, 0)
    tok = T.from_info(splits.train.info)
    found = [R.extract(s) for s in T.tokens(tok, splits.train.x)]
    unsaid = 0
    for a, labels in splits.train.cond.items():
        assert bool((labels != NULL).all())
        for f, label in zip(found, labels.tolist(), strict=True):
            assert f[a] in (label, NULL)
            unsaid += f[a] == NULL
    assert 0.05 < unsaid / (3 * len(found)) < 0.15  # omit = 0.1


@pytest.mark.parametrize("bad, message", [({"unsaid": "dropped"}, "valid: null, labelled"),
                                          ({"swap": 1.5}, "swap must be a probability")])
def test_restaurants_rejects_bad_options(bad, message):
    with pytest.raises(UsageError, match=message):
        R.restaurants({"n_train": 10, "n_test": 5, "length": 32, **bad}, None, 0)


@pytest.fixture(scope="module")
def model(splits) -> EmbeddingDiffusionLM:
    torch.manual_seed(0)
    return TEXT.build_model(TEXT.preset("smoke").model, splits.train.attributes, splits.train.info)


def test_presets_weight_the_prior_by_the_schedules_last_alpha_bar():
    """The presets state the sqrt schedule's last alpha_bar as a number (so they load without torch); it is the
    schedule's at every preset's T."""
    from crossguide.modalities.text.modality import LAST_ALPHA_BAR, SCHEDULE
    from crossguide.schedules import make

    for spec in registry.get("text").presets.values():
        assert spec.model["prior_alpha_bar"] == LAST_ALPHA_BAR == float(make(SCHEDULE, spec.T).alpha_bar[-1])


def test_snap_returns_the_nearest_exact_embeddings(model):
    x = torch.randn(3, 32, 16, generator=torch.Generator().manual_seed(0))
    snapped = model.snap(x)
    table = model.embed.weight.detach()
    nearest = torch.cdist(x.reshape(-1, 16), table).argmin(-1)
    assert torch.equal(snapped.reshape(-1, 16), table[nearest])
    assert torch.equal(model.snap(snapped), snapped)  # a fixed point


def test_decoding_clean_embeddings_recovers_the_tokens(model, splits):
    ids = splits.test.x[:8]
    with torch.no_grad():
        x0 = model.encode(ids)
        assert x0.shape == (8, *model.sample_shape)
        assert torch.equal(model.decode(x0), ids)
        assert torch.equal(model.decode(x0 + 0.01 * torch.randn_like(x0)), ids)


def test_rounding_loss_trains_through_the_tied_head(model, splits):
    ids = splits.train.x[:4]
    x0 = model.encode(ids)
    loss = model.extra_loss(ids, x0, x0, torch.zeros(4), x0)
    loss.backward()
    assert loss.item() >= 0 and model.embed.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_self_conditioning_reads_its_estimate_and_none_as_zeros(splits):
    torch.manual_seed(0)
    config = {**TEXT.preset("smoke").model, "self_condition": True}
    model = TEXT.build_model(config, splits.train.attributes, splits.train.info).eval()
    assert model.self_conditioning and model.config()["self_condition"]
    x = torch.randn(2, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    t, cond = torch.full((2,), 50.0), {a: torch.zeros(2, dtype=torch.long) for a in model.attributes}
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, cond), model(x, t, cond, x0_self=torch.zeros_like(x)))
        assert not torch.allclose(model(x, t, cond), model(x, t, cond, x0_self=model.encode(splits.test.x[:2])))


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = [json.dumps({"text": f"the {c} cat sat on the mat number {i}.", "colour": c, "size": s})
        for i in range(30) for c, s in [("black", "big"), ("white", "small")]]


def test_jsonl_loads_a_good_file(tmp_path):
    train, test = jsonl({"length": 64}, _write(tmp_path / "d.jsonl", GOOD), 0)
    assert train.attributes == {"colour": ["black", "white"], "size": ["big", "small"]}
    assert len(train) + len(test) == 60 and len(test) == 6
    assert train.info["length"] == 10 and train.info["truncated"] == 0
    tok = T.from_info(train.info)
    text = T.decode(tok, train.x[:1])[0]
    colour = train.attributes["colour"][int(train.cond["colour"][0])]
    assert f"the {colour} cat" in text and text.endswith(".")


@pytest.mark.parametrize("line, message", [
    ("", "d.jsonl:3: empty line"),
    ("{not json", "d.jsonl:3: not valid JSON"),
    ('["text"]', "d.jsonl:3: expected a JSON object"),
    ('{"colour": "black", "size": "big"}', "d.jsonl:3: missing field 'text'"),
    ('{"text": "a", "colour": "black"}', "d.jsonl:3: missing field 'size'"),
    ('{"text": "a", "colour": "black", "size": 3}', "d.jsonl:3: field 'size' is int"),
    ('{"text": "a", "colour": "black", "size": "big", "x": "y"}', "d.jsonl:3: unexpected field 'x'"),
    ('{"text": " ", "colour": "black", "size": "big"}', "d.jsonl:3: field 'text' is empty"),
])
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    path = _write(tmp_path / "d.jsonl", [*GOOD[:2], line, *GOOD[2:]])
    with pytest.raises(UsageError, match=message):
        jsonl({"length": 32}, path, 0)


def test_jsonl_needs_a_path_and_attributes(tmp_path):
    with pytest.raises(UsageError, match="needs --data"):
        jsonl({"length": 32}, None, 0)
    with pytest.raises(UsageError, match="no attribute field"):
        jsonl({"length": 32}, _write(tmp_path / "d.jsonl", ['{"text": "a b"}', '{"text": "c"}']), 0)
    with pytest.raises(UsageError, match="procedural"):
        TEXT.load_dataset("restaurants", "smoke", tmp_path / "d.jsonl", 0)


def test_distinct_and_self_bleu():
    a, b = "the cat sat on the mat".split(), "a dog ran in the park".split()
    assert D.distinct([a], 1) == pytest.approx(5 / 6)
    assert D.distinct([a, a], 2) == pytest.approx(5 / 10)
    assert D.bleu(a, [a]) == pytest.approx(1.0)
    assert D.self_bleu([a, a, a]) == pytest.approx(1.0)
    assert D.self_bleu([a, b]) < 0.1
    mixed = (D.bleu(b, [a]) + D.bleu(a, [b])) / 2
    assert D.grouped(D.self_bleu, [a, a, b, a], [0, 0, 1, 1]) == pytest.approx((1.0 + mixed) / 2)


# fixed sentences with the cases a BLEU gets wrong: hypotheses shorter than 4 tokens, repeated words (clipping),
# no shared word, references of other lengths (brevity penalty), a sentence repeated exactly
FIXED = [s.split() for s in (
    "the cat sat on the mat", "the the the the", "a dog ran in the park", "cotto serves italian food .",
    "cotto serves food", "cheap", "the cat", "zizzi is by the river and it is cheap .", "the cat sat on the mat",
    "riverside pub", "a b c d e f g h",
)]


def test_bleu_self_bleu_and_distinct_match_an_independent_implementation():
    """NLTK's sentence BLEU with Chen & Cherry's smoothing 1 (what Texygen's self-BLEU calls) and its n-grams."""
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    from nltk.util import ngrams

    smooth = SmoothingFunction(epsilon=0.1).method1
    for i, hyp in enumerate(FIXED):
        refs = FIXED[:i] + FIXED[i + 1:]
        assert D.bleu(hyp, refs) == pytest.approx(sentence_bleu(refs, hyp, smoothing_function=smooth), abs=1e-12), hyp
    expected = sum(sentence_bleu(FIXED[:i] + FIXED[i + 1:], h, smoothing_function=smooth)
                   for i, h in enumerate(FIXED)) / len(FIXED)
    assert D.self_bleu(FIXED) == pytest.approx(expected, abs=1e-12)
    assert D.bleu(["cheap"], [["the", "cat"]]) == 0.0  # no word in common: 0, as NLTK
    assert 0 < D.bleu(["the", "cat"], [["the", "dog"]]) < 1  # two tokens: smoothed higher orders, not 0
    for n in (1, 2, 3):
        grams = [g for s in FIXED for g in ngrams(s, n)]
        assert D.distinct(FIXED, n) == pytest.approx(len(set(grams)) / len(grams))


def test_language_model_scores_the_end_of_each_sentence():
    ids = torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]])
    inputs, labels = LM.sequences(ids, 0)
    assert inputs.tolist() == [[0, 5, 6, 0, 0], [0, 7, 0, 0, 0]]
    assert labels.tolist() == [[5, 6, 0, -100, -100], [7, 0, -100, -100, -100]]


def test_smoke_end_to_end(tmp_path):
    recs = bench("text", out=tmp_path / "run", preset="smoke", ws=[0.0, 2.0], progress=False)
    assert [r["w"] for r in recs] == [0.0, 2.0]
    for r in recs:
        m = r["metrics"]
        for key in ("adherence", "adherence/food", "fd", "perplexity", "distinct1", "distinct2", "self_bleu",
                    "well_formed"):
            assert key in m
        assert 0 <= m["adherence"] <= 1 and 0 <= m["well_formed"] <= 1 and m["perplexity"] > 1
        assert r["n"] == 36 and r["extra"]["evaluator"]["control"] == "exact keyword lexicon"
    manifest = [json.loads(line) for line in (tmp_path / "run" / "samples" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 72 and all(isinstance(m["text"], str) for m in manifest)
    first = manifest[0]
    path, _, row = first["path"].partition("#")
    line = (tmp_path / "run" / "samples" / path).read_text().splitlines()[int(row)]
    assert json.loads(line)["text"] == first["text"]
    setting = recs[0]["setting"]
    assert (tmp_path / "run" / "samples" / setting / "samples.md").read_text().startswith("| # | food | area")
    assert (tmp_path / "run" / "samples" / f"{setting}.png").stat().st_size > 0
    # the checkpoint alone (tokenizer inside config.json) is enough to sample and read sentences, snap or not
    for extra in ([], ["--no-snap"]):
        out = tmp_path / f"sample{len(extra)}"
        assert cli(["sample", "--checkpoint", str(tmp_path / "run" / "model"), "--cond", "food=Italian,area=centre",
                    "--w", "1", "--steps", "3", "--n", "2", "--out", str(out), *extra]) == 0
        rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and rows[0]["condition"] == {"food": "Italian", "area": "centre"}


@pytest.mark.parametrize("backbone", ["roberta", "distilbert"])
def test_the_encoder_is_any_transformers_type_and_round_trips(backbone: str) -> None:
    """``--model-args backbone=...``: another encoder type, built from a local config, learns positions and
    conditions like BERT, and its config rebuilds the same network."""
    splits = TEXT.load_dataset(None, "smoke", None, 0)
    config = TEXT.model_config(None, "smoke", {"backbone": backbone})
    torch.manual_seed(0)
    model = TEXT.build(None, config, splits.train.attributes, splits.train.info).eval()
    assert type(model.bert).__name__.lower().startswith(backbone)
    again = TEXT.build(None, model.config(), splits.train.attributes, splits.train.info).eval()
    again.load_state_dict(model.state_dict())
    x_t = torch.randn(3, *model.sample_shape)
    cond = {a: torch.tensor([0, -1, 1]) for a in splits.train.attributes}
    out = model(x_t, torch.tensor([5.0, 50.0, 150.0]), cond)
    assert out.shape == x_t.shape and torch.equal(out, again(x_t, torch.tensor([5.0, 50.0, 150.0]), cond))
    with pytest.raises(UsageError, match="unknown text backbone 'nope'; valid: a transformers encoder model type"):
        TEXT.build(None, {**config, "backbone": "nope"}, splits.train.attributes, splits.train.info)
