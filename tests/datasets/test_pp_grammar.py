"""pp-string grammar, registry and get_preprocess_fn errors (datasets.pp)."""

import pytest
import tensorflow as tf

from datasets import pp
from datasets.pp.grammar import parse_specs


def test_parse_basic_layout():
    s = (
        'decode|resize(224, antialias=True)|value_range(-1, 1)|strfmt("answer en {question}", outkey="prefix")'
        '|choice(inkey="answers", outkey="suffix")|keep("image", "text", "mask_ar", "mask_loss")'
    )
    assert pp.parse(s) == [
        ("decode", (), {}),
        ("resize", (224,), {"antialias": True}),
        ("value_range", (-1, 1), {}),
        ("strfmt", ("answer en {question}",), {"outkey": "prefix"}),
        ("choice", (), {"inkey": "answers", "outkey": "suffix"}),
        ("keep", ("image", "text", "mask_ar", "mask_loss"), {}),
    ]


def test_parse_literals_pipes_in_strings_and_positions():
    s = ' a | b((1, 2), [3, -4.5], {"k": None}, x=b"|", y="a|b(") |\n c("\\"|") | d(\'\'\'x|"y\'\'\')'
    specs = parse_specs(s)
    assert [(o.name, o.args, o.kwargs) for o in specs] == [
        ("a", (), {}),
        ("b", ((1, 2), [3, -4.5], {"k": None}), {"x": b"|", "y": "a|b("}),
        ("c", ('"|',), {}),
        ("d", ('x|"y',), {}),
    ]
    assert [o.index for o in specs] == [0, 1, 2, 3]
    for o in specs:  # offsets point at the op name
        assert s[o.offset :].startswith(o.name)
    assert pp.parse("") == [] and pp.parse("   ") == []


def test_empty_pp_string_is_identity():
    fn = pp.get_preprocess_fn("")
    d = {"x": tf.constant(1)}
    assert fn(d) == d and fn(d) is not d


def test_unknown_op_suggests_nearest():
    with pytest.raises(ValueError) as e:
        pp.get_preprocess_fn("decode|resise(224)")
    msg = str(e.value)
    assert "op #1" in msg and "'resise'" in msg and "char 7" in msg
    assert "did you mean" in msg and "'resize'" in msg


@pytest.mark.parametrize(
    "bad, where",
    [
        ("resize(size)", "char 7"),  # a name, not a literal
        ("resize(224, method=bilinear)", "char 19"),  # unquoted string
        ('decode|resize(__import__("os").system("ls"))', "char 14"),
        ("resize(().__class__)", "char 7"),
        ("resize((lambda: 1)())", "char 7"),
        ('strfmt(f"{1+1}")', "char 7"),
        ("resize([x for x in range(3)])", "char 7"),
        ("resize(1 if True else 2)", "char 7"),
    ],
)
def test_non_literals_rejected(bad, where):
    with pytest.raises(ValueError) as e:
        pp.parse(bad)
    msg = str(e.value)
    assert "not a Python literal" in msg and where in msg
    assert "'resize'" in msg or "'strfmt'" in msg


@pytest.mark.parametrize(
    "bad, needle",
    [
        ('__import__("os")', "unknown op '__import__'"),
        ('os.system("rm -rf /")', "expected `name` or `name(literal args)`"),
        ('decode|__import__("os").system("x")', "op #1"),
        ("resize(*[1])", "*args are not allowed"),
        ("resize(**{'size': 1})", "**kwargs are not allowed"),
        ("decode||resize(2)", "op #1 at char 7 is empty"),
        ("decode|", "op #1 at char 7 is empty"),
        ("resize(224", "never closed"),
        ("resize(224))", "unbalanced ')'"),
        ('strfmt("abc)', "unterminated string"),
        ("resize(224, 224 224)", "syntax error"),
        ("resize(x=1, x=2)", "given twice"),
        ("1(2)", "expected `name`"),
    ],
)
def test_syntax_errors(bad, needle):
    with pytest.raises(ValueError) as e:
        pp.get_preprocess_fn(bad)
    assert needle in str(e.value)


def test_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    for bad in [
        f'resize(open("{marker}", "w"))',
        f'__import__("pathlib").Path("{marker}").touch()',
        f"keep(exec(\"open('{marker}', 'w')\"))",
    ]:
        with pytest.raises(ValueError):
            pp.get_preprocess_fn(bad)
    assert not marker.exists()


@pytest.mark.parametrize(
    "bad, needle",
    [
        ("resize(1, 'bilinear', True, 'image', None, None, 7)", "too many positional arguments"),
        ("resize", "missing a required argument: 'size'"),
        ("resize(224, sise=3)", "unexpected keyword argument 'sise'"),
        ("value_range(-1)", "missing a required argument: 'vmax'"),
    ],
)
def test_bad_arguments_name_op_and_signature(bad, needle):
    with pytest.raises(ValueError) as e:
        pp.get_preprocess_fn("decode|" + bad)
    msg = str(e.value)
    assert needle in msg and "op #1" in msg and "signature: " in msg
    assert msg.split("signature: ")[1].startswith(bad.split("(")[0] + "(")


def test_bad_argument_values_name_op():
    with pytest.raises(ValueError, match=r"op #0 'resize'.*size must be"):
        pp.get_preprocess_fn("resize(-3)")
    with pytest.raises(ValueError, match=r"op #0 'resize'.*method must be one of"):
        pp.get_preprocess_fn("resize(4, method='bilinearr')")


def test_register_custom_op_and_tokenizer_default():
    seen = {}

    @pp.register("_test_add")
    def _test_add(value, key="x", tokenizer=None):
        """Adds ``value`` to ``data[key]``."""
        seen["tokenizer"] = tokenizer

        def fn(data):
            data[key] = data[key] + value
            return data

        return fn

    try:
        assert "_test_add" in pp.registry
        fn = pp.get_preprocess_fn("_test_add(2)|_test_add(3, key='y')", tokenizer="tok.model")
        out = fn({"x": tf.constant(1), "y": tf.constant(10)})
        assert int(out["x"]) == 3 and int(out["y"]) == 13
        assert seen["tokenizer"] == "tok.model"
        pp.get_preprocess_fn("_test_add(2, tokenizer='other.model')", tokenizer="tok.model")
        assert seen["tokenizer"] == "other.model"
        with pytest.raises(ValueError, match="already registered"):
            pp.register("_test_add")(lambda: None)
    finally:
        pp.registry._ops.pop("_test_add", None)


def test_runtime_errors_name_the_op():
    fn = pp.get_preprocess_fn('strfmt("q {question}")|lower(key="nope")')
    with pytest.raises(KeyError) as e:
        fn({"question": tf.constant("x")})
    assert "op #1 'lower'" in str(e.value) and "'nope'" in str(e.value)


def test_registry_lookup_and_fn_ops():
    with pytest.raises(KeyError, match="did you mean 'decode'"):
        pp.registry["decod"]
    fn = pp.get_preprocess_fn("decode|resize(8)")
    assert [o.name for o in fn.ops] == ["decode", "resize"]
    for name in pp.registry:
        assert pp.registry[name].__doc__, f"op {name} has no docstring"
