"""The benchmark QA evaluator types (chartqa, tallyqa, pope, scienceqa, rsvqa, multiple_choice, mmvp), vqa's exact
match, caption groups and the submission formats: end to end through `Evaluator.run` on a JSONL split (the model's
answers are fixed texts echoed from the prompt), and the records -> metrics path on hand-made batches (mock data)."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from evaluators import metrics as M
from evaluators import submission as S
from evaluators.common import build_evaluators
from evaluators.registry import EVALUATOR_TYPES, EvalConfigError
from paligemma import decode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = os.path.join(ROOT, "tests", "fixtures", "eval")
IMG = "decode|resize(32)|value_range(-1, 1)"

CHOICES = ["cat", "dog", "bird"]
OPTIONS = ["open", "closed"]
# One row per example; `say_<type>` is the answer the fake model gives for that evaluator.
ROWS = [
    dict(
        say_chartqa="12.3", answers=["12"], source="human",
        say_tallyqa="three", count=3, issimple=1,
        say_pope="yes", label="yes",
        say_scienceqa="The answer is B.", answer=1,
        say_mc="Dog",
        say_rsvqa="yes", rs_answers=["yes"], question_type="presence",
        say_mmvp="(a)", mmvp_answer="(a)", pair_id=0,
        say_vqa="cat", vqa_answers=["Cat", "cat", "cat", "dog"], image_name="VizWiz_val_0.jpg",
        say_cap="a red box", captions=["a red box", "a red square"], lang="en",
    ),
    dict(
        say_chartqa="Yes", answers=["yes"], source="augmented",
        say_tallyqa="2", count=0, issimple=0,
        say_pope="no", label="yes",
        say_scienceqa="A", answer=0,
        say_mc="cat",
        say_rsvqa="no", rs_answers=["yes"], question_type="presence",
        say_mmvp="b", mmvp_answer="(b)", pair_id=0,
        say_vqa="cat", vqa_answers=["cat", "dog", "dog", "dog"], image_name="VizWiz_val_1.jpg",
        say_cap="a green box", captions=["a green box", "a green square"], lang="en",
    ),
    dict(
        say_chartqa="6", answers=["5"], source="human",
        say_tallyqa="none", count=0, issimple=0,
        say_pope="No, there is not.", label="no",
        say_scienceqa="dog", answer=2,
        say_mc="dog",
        say_rsvqa="rural", rs_answers=["rural"], question_type="rural_urban",
        say_mmvp="open", mmvp_answer="(a)", pair_id=1,
        say_vqa="bird", vqa_answers=["bird", "bird", "bird", "bird"], image_name="VizWiz_val_2.jpg",
        say_cap="le carre bleu", captions=["le carre bleu", "un carre bleu"], lang="fr",
    ),
    dict(
        say_chartqa="0.45", answers=["45%"], source="augmented",
        say_tallyqa="five", count=5, issimple=1,
        say_pope="yes", label="no",
        say_scienceqa="hmm", answer=1,
        say_mc="bird",
        say_rsvqa="Yes.", rs_answers=["no"], question_type="comp",
        say_mmvp="(a) open", mmvp_answer="(b)", pair_id=1,
        say_vqa="dog", vqa_answers=["cat", "cat", "cat", "dog"], image_name="VizWiz_val_3.jpg",
        say_cap="un chat", captions=["le chat noir", "un chat"], lang="fr",
    ),
]  # fmt: skip


def _config(data, say, keep, **keys):
    prompt = f'|strfmt("{{{say}}}", outkey="prefix")|tok_paligemma_prompt(text_len=24)'
    kept = ", ".join(f'"{k}"' for k in ("image", "text", "mask_ar", "mask_input", *keep))
    return dict(data=data, batch_size=2, max_decode_len=24, pp=f"{IMG}{prompt}|keep({kept})", **keys)


def _configs(data):
    return {
        "chartqa": _config(
            data, "say_chartqa", ["answers", "source", "question_id"], type="chartqa",
            answer_type_key="source", mean_over_types=True,
        ),
        "tallyqa": _config(
            data, "say_tallyqa", ["count", "issimple"], type="tallyqa", answers_key="count", id_key=None
        ),
        "pope": _config(data, "say_pope", ["label"], type="pope", answers_key="label", id_key=None),
        "scienceqa": _config(data, "say_scienceqa", ["choices", "answer", "question_id"], type="scienceqa"),
        "mc": _config(
            data, "say_mc", ["choices", "answer", "question_id"], type="multiple_choice", submission_format="aokvqa"
        ),
        "rsvqa": _config(
            data, "say_rsvqa", ["rs_answers", "question_type"], type="rsvqa", answers_key="rs_answers", id_key=None
        ),
        "mmvp": _config(
            data, "say_mmvp", ["mmvp_answer", "options", "pair_id"], type="mmvp", answer_key="mmvp_answer",
            choices_key="options", id_key=None,
        ),
        "vqa": _config(
            data, "say_vqa", ["vqa_answers", "image_name"], type="vqa", answers_key="vqa_answers", normalize="exact",
            min_matches=3, id_key="image_name", submission_id_name="image",
        ),
        "cap": _config(
            data, "say_cap", ["captions", "lang", "question_id"], type="caption", id_key="question_id",
            group_key="lang", exclude_from_avg="en",
        ),
    }  # fmt: skip


def _echo_generate(model, params, batch, *, max_decode_len, eos_id, sampler="greedy", rng=None, pad_id=0):
    """A stand-in model that answers with its prompt (the `say_*` text): prompt tokens after BOS, then EOS."""
    tokens, lengths = [], []
    for text, mask in zip(np.asarray(batch["text"]), np.asarray(batch["mask_input"])):
        ids = [int(t) for t, m in zip(text[1:], mask[1:]) if m] + [eos_id]
        ids = ids[:max_decode_len]
        lengths.append(len(ids))
        tokens.append(ids + [pad_id] * (max_decode_len - len(ids)))
    return {"tokens": jnp.asarray(tokens, jnp.int32), "lengths": jnp.asarray(lengths, jnp.int32)}


@pytest.fixture(scope="module")
def results(tmp_path_factory, tokenizer_path):
    tmp = tmp_path_factory.mktemp("qa_tasks")
    path = tmp / "split.jsonl"
    with open(path, "w") as f:
        for i, row in enumerate(ROWS):
            full = dict(row, image=f"images/{i}.png", question_id=100 + i, choices=CHOICES, options=OPTIONS)
            f.write(json.dumps(full) + "\n")
    data = dict(name="jsonl", path=str(path), image_root=IMAGES)
    evaluators = build_evaluators(_configs(data), model=None, tokenizer_path=tokenizer_path, workdir=str(tmp))
    mp = pytest.MonkeyPatch()
    mp.setattr(decode, "generate", _echo_generate)
    try:
        out = {name: (ev.run(params=None), ev.last) for name, ev in evaluators.items()}
    finally:
        mp.undo()
    return out


def _predictions(results, name):
    return [r["prediction"] for r in results[name][1].records]


def test_the_fake_model_answers_as_told(results):
    for name, key in (("chartqa", "say_chartqa"), ("scienceqa", "say_scienceqa"), ("mmvp", "say_mmvp")):
        assert _predictions(results, name) == [row[key] for row in ROWS]


def test_chartqa_relaxed_accuracy_per_split_and_their_mean(results):
    m = results["chartqa"][0]
    # 12.3 vs 12 (2.5% off) right, "Yes" vs "yes" right, 6 vs 5 wrong, 0.45 vs 45% right.
    assert m["relaxed_accuracy"] == pytest.approx(3 / 4)
    assert m["relaxed_accuracy_human"] == pytest.approx(1 / 2) and m["relaxed_accuracy_augmented"] == 1.0
    assert m["mean_relaxed_accuracy"] == pytest.approx(3 / 4)  # (1/2 + 1) / 2: the splits weigh alike
    with open(results["chartqa"][1].files["submission"]) as f:
        assert json.load(f)[0] == {"question_id": 100, "answer": "12.3"}


def test_tallyqa_simple_and_complex(results):
    m = results["tallyqa"][0]
    # "three" = 3 (simple), "2" != 0 (complex), "none" = 0 (complex), "five" = 5 (simple).
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["accuracy_simple"] == 1.0 and m["accuracy_complex"] == pytest.approx(1 / 2)
    assert m["num_simple"] == 2 and m["num_complex"] == 2


def test_pope_yes_is_the_positive_class(results):
    m = results["pope"][0]
    # yes/yes TP, no/yes FN, "No, there is not."/no TN, yes/no FP.
    assert m["accuracy"] == pytest.approx(1 / 2)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(1 / 2) and m["yes_ratio"] == pytest.approx(1 / 2)
    assert "invalid_labels" not in m


def test_scienceqa_parses_the_option(results):
    m = results["scienceqa"][0]
    # "The answer is B." = 1 right; "A" = 0 right; "dog" = choice 1, answer 2: wrong; "hmm": unparsable.
    assert m["accuracy"] == pytest.approx(1 / 2) and m["parse_failures"] == pytest.approx(1 / 4)
    assert [r["parsed"] for r in results["scienceqa"][1].records] == [1, 0, 1, None]


def test_multiple_choice_and_its_aokvqa_submission(results):
    m, run = results["mc"]
    assert m["accuracy"] == pytest.approx(1 / 2)  # "Dog" and "cat" right (case-insensitive), "dog", "bird" wrong
    with open(run.files["submission"]) as f:
        sub = json.load(f)
    assert sub == {str(100 + i): {"multiple_choice": row["say_mc"]} for i, row in enumerate(ROWS)}


def test_rsvqa_mean_over_question_types(results):
    m = results["rsvqa"][0]
    assert m["accuracy"] == pytest.approx(1 / 2)  # overall accuracy (OA)
    assert (m["accuracy_presence"], m["accuracy_rural_urban"], m["accuracy_comp"]) == (0.5, 1.0, 0.0)
    assert m["mean_accuracy"] == pytest.approx(1 / 2)  # average accuracy (AA): (0.5 + 1 + 0) / 3


def test_mmvp_paired_accuracy(results):
    m = results["mmvp"][0]
    # Pair 0: "(a)" = (a), "b" = (b): both right. Pair 1: "open" = option (a) right, "(a) open" vs (b) wrong.
    assert m["paired_accuracy"] == pytest.approx(1 / 2) and m["accuracy"] == pytest.approx(3 / 4)
    assert m["num_pairs"] == 2 and "incomplete_pairs" not in m
    assert "submission" not in results["mmvp"][1].files  # no test server


def test_vqa_exact_match_and_the_vizwiz_submission(results):
    m, run = results["vqa"]
    # min_matches=3: "cat" vs (Cat, cat, cat, dog) -> 3 matches after lowercasing = 1; vs one "cat" -> 1/3;
    # "bird" x4 -> 1; "dog" once -> 1/3.
    assert m["accuracy"] == pytest.approx((1 + 1 / 3 + 1 + 1 / 3) / 4)
    with open(run.files["submission"]) as f:
        assert json.load(f) == [{"image": row["image_name"], "answer": row["say_vqa"]} for row in ROWS]


def test_caption_scores_each_group_alone(results):
    m, run = results["cap"]
    by_lang = {lang: [r for r in run.records if r["group"] == lang] for lang in ("en", "fr")}
    for lang, records in by_lang.items():
        preds, refs = [r["prediction"] for r in records], [r["references"] for r in records]
        assert m[f"cider_{lang}"] == pytest.approx(M.cider(preds, refs)[0])  # document frequencies of the group
        assert m[f"bleu4_{lang}"] == pytest.approx(M.bleu4(preds, refs)[0])
    assert m["cider_avg"] == pytest.approx((m["cider_en"] + m["cider_fr"]) / 2)
    assert m["cider_avg_no_en"] == pytest.approx(m["cider_fr"])
    assert "cider" not in m  # no pooled score over mixed languages
    with open(run.files["submission"]) as f:
        assert json.load(f)[2] == {"image_id": 102, "caption": "le carre bleu"}


# ----------------------------------------------------------------------------------------------------------
# Records -> metrics on hand-made batches (no model): mock values, test splits, config errors.


def _evaluator(type_, **keys):
    ev = EVALUATOR_TYPES[type_]("x", dict(type=type_, data={}, pp="", batch_size=2, **keys), model=None,
                                tokenizer_path=None)  # fmt: skip
    ev.texts = lambda outputs, rows: [outputs["say"][r] for r in rows]
    return ev


def _score(ev, batch, says):
    records = ev._records(batch, {"say": says}, list(range(len(says))))
    return records, ev._metrics(records)


def _texts(*xs):
    return np.array([x.encode() for x in xs], dtype=object)


def test_mock_values_do_not_stop_a_run():
    """`mode=mock` data: random words as POPE labels, answer indices 0..99 beyond the choices, random pair ids."""
    ev = _evaluator("pope", id_key=None)
    _, m = _score(ev, {"answers": _texts("yes", "blue fish")}, ["yes", "no"])
    assert m["invalid_labels"] == 1 and m["accuracy"] == 1.0
    _, m = _score(ev, {"answers": _texts("red", "blue fish")}, ["yes", "no"])
    assert m == {"invalid_labels": 2}
    choices = np.array([[b"a", b"b", b"c"]] * 2, dtype=object)
    for type_ in ("scienceqa", "multiple_choice"):
        ev = _evaluator(type_, id_key=None)
        records, m = _score(ev, {"choices": choices, "answer": np.array([57, 2])}, ["A", "c"])
        assert m["invalid_answers"] == 1 and m["accuracy"] == 1.0
        assert records[0]["invalid_answer"] == 57
        _, m = _score(ev, {"choices": choices, "answer": np.array([57, 99])}, ["A", "c"])
        assert m == {"invalid_answers": 2}
    ev = _evaluator("mmvp", id_key=None)
    _, m = _score(ev, {"answer": _texts("green tree", "dog"), "pair_id": np.array([41, 7])}, ["green tree", "cat"])
    assert m["paired_accuracy"] == 0.5 and m["incomplete_pairs"] == 2
    ev = _evaluator("tallyqa", id_key=None)
    _, m = _score(ev, {"answers": _texts("red", "3"), "issimple": np.array([57, 1])}, ["red", "3"])
    assert m == {"accuracy": 1.0, "accuracy_simple": 1.0, "num_simple": 1, "num_complex": 0}


def test_a_split_without_ground_truth_is_predicted_not_scored():
    choices = np.array([[b"a", b"b"]] * 2, dtype=object)
    cases = [
        ("chartqa", {"answers": _texts("", "")}),
        ("tallyqa", {"answers": _texts("", ""), "issimple": np.array([1, 0])}),
        ("pope", {"answers": _texts("", "")}),
        ("rsvqa", {"answers": _texts("", ""), "question_type": _texts("comp", "presence")}),
        ("scienceqa", {"choices": choices, "answer": np.array([-1, -1])}),
        ("multiple_choice", {"choices": choices, "answer": np.array([-1, -1])}),
        ("mmvp", {"answer": _texts("", ""), "pair_id": np.array([0, 0])}),
    ]
    for type_, batch in cases:
        ev = _evaluator(type_)
        records, m = _score(ev, dict(batch, question_id=np.array([5, 6])), ["a", "b"])
        assert m == {"unscored": 2}, type_
        if "submission_file" in ev.config:
            assert ev._submission(records) == [{"question_id": 5, "answer": "a"}, {"question_id": 6, "answer": "b"}]


def test_answer_index_forms():
    from evaluators.qa_tasks import answer_index

    choices = ["red", "green", "blue"]
    assert answer_index(np.int64(2), choices) == (2, True)
    assert answer_index(b"1", choices) == (1, True)
    assert answer_index(b"The answer is C.", choices) == (2, True)
    assert answer_index("Green", choices) == (1, True)
    assert answer_index(-1, choices) == (None, True)  # no ground truth
    assert answer_index(b"", choices) == (None, True)
    assert answer_index(3, choices) == (None, False)
    assert answer_index("purple", choices) == (None, False)


def test_rsvqa_mean_types_and_exact_normalisation():
    batch = {
        "answers": _texts("yes", "no", "12", "rural"),
        "question_type": _texts("presence", "comp", "count", "rural_urban"),
    }
    ev = _evaluator("rsvqa", id_key=None, mean_types=["presence", "comp", "rural_urban"])
    _, m = _score(ev, batch, ["Yes, there is.", "no", "twelve", "urban"])
    assert m["accuracy_count"] == 1.0 and m["accuracy_presence"] == 1.0
    assert m["mean_accuracy"] == pytest.approx(2 / 3)  # count is left out of the mean
    ev = _evaluator("rsvqa", id_key=None, normalize="exact")
    _, m = _score(ev, batch, ["Yes, there is.", "no", "twelve", "urban"])
    assert m["accuracy"] == pytest.approx(1 / 4) and m["mean_accuracy"] == pytest.approx(1 / 4)


def test_pope_exact_parse_counts_other_answers_as_wrong():
    batch = {"answers": _texts("yes", "no", "yes")}
    _, pope = _score(_evaluator("pope", id_key=None), batch, ["Yes, there is.", "There is not.", "maybe"])
    _, exact = _score(
        _evaluator("pope", id_key=None, parse="exact"), batch, ["Yes, there is.", "There is not.", "maybe"]
    )
    assert pope["accuracy"] == 1.0  # POPE's rule: "maybe" has no negation, so it is a yes
    assert exact["accuracy"] == 0.0 and exact["invalid_predictions"] == 3


@pytest.mark.parametrize(
    "type_, keys, match",
    [
        ("vqa", dict(normalize="exact_lower"), "normalize must be"),
        ("vqa", dict(normalize="vqav2", min_matches=3), "min_matches applies to"),
        ("vqa", dict(normalize="exact", min_matches=0), "min_matches must be"),
        ("vqa", dict(submission_format="csv"), "submission_format must be"),
        ("anls", dict(submission_id_name=""), "submission_id_name must be"),
        ("caption", dict(exclude_from_avg="en"), "exclude_from_avg needs group_key"),
        ("chartqa", dict(mean_over_types=True), "mean_over_types needs answer_type_key"),
        ("pope", dict(parse="loose"), "parse must be"),
        ("rsvqa", dict(normalize="vqav2"), "normalize must be"),
        ("rsvqa", dict(mean_types="count"), "mean_types must be"),
        ("mmvp", dict(answers_key="a"), "unknown key"),
    ],
)
def test_config_errors(type_, keys, match):
    with pytest.raises(EvalConfigError, match=match):
        _evaluator(type_, **keys)


def test_submission_defaults_keep_todays_formats():
    records = [{"id": 7, "prediction": "two"}]
    assert _evaluator("vqa")._submission(records) == [{"question_id": 7, "answer": "two"}]
    assert _evaluator("anls")._submission(records) == [{"questionId": 7, "answer": "two"}]
    assert _evaluator("anls", submission_id_name="question_id")._submission(records) == [
        {"question_id": 7, "answer": "two"}  # ST-VQA: ANLS, with VQAv2's field names
    ]
    assert _evaluator("caption")._submission(records) == [{"image_id": 7, "caption": "two"}]
    assert _evaluator("vqa", submission_format="aokvqa")._submission(records) == {"7": {"direct_answer": "two"}}


def test_merge_aokvqa(tmp_path, capsys):
    mc = {"q1": {"multiple_choice": "dog"}, "q2": {"multiple_choice": "cat"}}
    da = {"q1": {"direct_answer": "puppy"}, "q2": {"direct_answer": "kitten"}}
    paths = []
    for name, content in (("mc", mc), ("da", da), ("bad", {"q1": {"direct_answer": "x"}})):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(content))
    out = tmp_path / "out.json"
    assert S.main(["merge_aokvqa", str(paths[0]), str(paths[1]), str(out)]) == 0
    assert json.loads(out.read_text()) == {
        "q1": {"multiple_choice": "dog", "direct_answer": "puppy"},
        "q2": {"multiple_choice": "cat", "direct_answer": "kitten"},
    }
    assert S.main(["merge_aokvqa", str(paths[0]), str(paths[2]), str(out)]) == 2
    assert "same questions" in capsys.readouterr().err
    with pytest.raises(ValueError, match="given by two"):
        S.merge_aokvqa(mc, mc)
