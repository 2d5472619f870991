"""A pure-Python stand-in for the COCO caption toolkit's tokenisation (no Java).

The toolkit runs Stanford CoreNLP 3.4.1 `PTBTokenizer -preserveLines -lowerCase` on every caption and then drops
the tokens `'' ' ` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;``. (The bracket entries of that list are
upper case while the tokenizer output is lower case, so brackets survive as `-lrb-`, `-rrb-`, `-lsb-`...)

`ptb_tokenize` mirrors that pipeline for the text that captions contain:

* lowercase; unicode quotes/dashes/ellipsis mapped like PTB (`“` -> quote, `—` -> `--`, `…` -> `...`);
* punctuation split off words and dropped: `. , ; : ? ! - -- ...` and every quote; runs such as `?!` or
  `!!` are one token and survive (as in the toolkit); `#`, `$`, `%`, `&`, `*`, `+`, `=`, `<`,
  `>`... are split off and survive;
* brackets become `-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`;
* PTB contractions: `don't -> do n't`, `can't -> ca n't`, `won't -> wo n't`, `it's -> it 's`,
  `I'm -> i 'm`, `they're`, `we've`, `she'll`, `he'd`, possessive `'s`, `dogs' -> dogs`,
  `cannot -> can not`, `gonna -> gon na`, `gotta`, `wanna`, `lemme`, `gimme`, `'tis -> 't is`;
* kept whole: hyphenated words (`well-known`, `2-year-old`), numbers (`1,000`, `3.5`, `5:30`, `1/2`,
  `-5`), letter-dot abbreviations (`e.g.`, `u.s.`, `p.m.`, single letters `a.`), the common PTB
  abbreviations (`mr.`, `dr.`, `st.`, `etc.`, months...), `o'clock`-like words (`o'neil`,
  `ma'am`, `rock 'n' roll`), URLs, e-mail addresses, `#tag` / `@user`.

Known differences from the Java lexer (rare in captions): emoticons (`:)` -> `:-rrb-` in Java), the
upper-case `AT&T` rule, `a?b` kept whole by Java, phone numbers and a few exotic abbreviations.
The test suite checks exact agreement with the Java tool on a fixture of caption-like sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["PTB_PUNCTUATION", "ptb_tokenize", "ptb_tokenize_batch"]

# The toolkit's list of dropped tokens (as written there, upper-case brackets included).
PTB_PUNCTUATION = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_ABBREVIATIONS = frozenset(
    """
mr mrs ms dr st jr sr etc vs co inc ltd corp prof gen mt ft ave rd blvd jan feb mar apr jun jul aug sep sept
oct nov dec mon tue wed thu fri est cf sq dept ala ariz calif colo conn fla ga ind kan kans ky md mich minn mo
mont neb nev okla penn tenn va vt wis wyo adm brig capt cmdr col gov lt maj rep sen sgt messrs mme mlle rev bros
assn cie bhd cos univ al
""".split()
)

_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"}

_UNICODE_MAP = str.maketrans(
    {
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u2032": "'",
        "\u2014": " -- ",
        "\u2013": " -- ",
        "\u2015": " -- ",
        "\u2026": " ... ",
        "\u00a0": " ",
    }
)

# Whole words split by the PTB lexer (case-insensitive), as (first part length).
_SPLIT_WORDS = {"cannot": 3, "gonna": 3, "gotta": 3, "wanna": 3, "lemme": 3, "gimme": 3}

# Word-ish unit: letters/digits/underscore joined by single - . / (anything), or , : between digits.
# A leading sign is kept on numbers ("-5", "+5"); a leading period on decimals (".5").
_W = r"\w"
_WORD = re.compile(
    rf"[-+]\d+(?:[.,:/]\d+)*"  # signed number: "-5", "+3.5" (letters split off)
    rf"|(?:\.(?=\d))?{_W}+(?:[-./]{_W}+|(?<=\d)[,:]\d{_W}*)*"
)
_LETTER_DOTS = re.compile(r"(?:[^\W\d_]\.)+(?![^\W])")
_URL = re.compile(r"(?:(?:https?|ftp)://|www\.)\S+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CAPS_AMP = re.compile(r"[A-Z]+&[A-Z]+(?![^\W])")  # AT&T stays whole (a&w does not)
_TAG = re.compile(r"[#@][^\W\d]\w*")
# A word with apostrophes inside or as contraction suffixes: "don't", "rock'n'roll", "o'neil's".
_APOS_SPAN = re.compile(rf"{_W}+(?:'{_W}+)+")
_CONTRACTION_SUFFIX = re.compile(r"(n't|'s|'m|'d|'ll|'re|'ve)$", re.IGNORECASE)
_KEEP_APOS_WORD = re.compile(
    r"^(?:[a-hj-xz]'[^\W\d_]{2,}"  # o'neil, d'souza, l'oreal
    r"|[^\W\d_]*[aeiou]'[aeiou][^\W\d_]*"  # ma'am, ne'er, e'er
    r"|c'mon|li'l|o'clock)$",
    re.IGNORECASE,
)
_LEADING_APOS_WORDS = re.compile(r"'(?:em|cause|til|till|n'|[2-9]0s|s|m|d|ll|re|ve)(?!\w)", re.IGNORECASE)
_LEADING_T = re.compile(r"'(t)(is|was)(?!\w)", re.IGNORECASE)
_QUESTION_BANG = re.compile(r"[?!]+")
_DOTS = re.compile(r"\.+")
_DASHES = re.compile(r"-+")
_NO_DIGIT = re.compile(r"\.\s*\d")
_APOSTROPHES = re.compile(r"'+")


def _split_contractions(span: str) -> list[str]:
    """Splits PTB contraction suffixes (from the right) and stray inner apostrophes of one apostrophe span."""
    suffixes = []
    base = span
    while True:
        m = _CONTRACTION_SUFFIX.search(base)
        if not m or m.start() == 0:
            break
        suffixes.append(m.group(1))
        base = base[: m.start()]
    out: list[str] = []
    if base.lower() == "n't":
        out.append(base)
    elif base[:2].lower() == "y'":  # y'all -> y' all (as the Java lexer does)
        out.extend([base[:2], base[2:]])
    elif "'" in base:
        if _KEEP_APOS_WORD.match(base):
            out.append(base)
        else:
            pieces = re.split(r"('n'|')", base)  # rock'n'roll -> rock 'n' roll; ab'cd -> ab ' cd
            out.extend(p for p in pieces if p)
    else:
        out.append(base)
    out.extend(reversed(suffixes))
    return out


def _word_tokens(word: str) -> list[str]:
    low = word.lower()
    if low in _SPLIT_WORDS:
        k = _SPLIT_WORDS[low]
        return [word[:k], word[k:]]
    return [word]


def _tokenize_line(text: str) -> list[str]:
    text = text.translate(_UNICODE_MAP)
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        for pattern in (_URL, _EMAIL):
            m = pattern.match(text, i)
            if m:
                break
        if m:
            tokens.append(m.group())
            i = m.end()
            continue
        m = _CAPS_AMP.match(text, i)
        if m and (i == 0 or not text[i - 1].isalnum()):
            tokens.append(m.group())
            i = m.end()
            continue
        m = _TAG.match(text, i)
        if m:
            tokens.append(m.group())
            i = m.end()
            continue
        if c == "'":
            m = _LEADING_T.match(text, i)
            if m:
                tokens.extend(["'" + m.group(1), m.group(2)])
                i = m.end()
                continue
            m = _LEADING_APOS_WORDS.match(text, i)
            if m:
                tokens.append(m.group())
                i = m.end()
                continue
            m = _APOSTROPHES.match(text, i)
            tokens.append(m.group())  # a quote: dropped later
            i = m.end()
            continue
        if c == '"':
            tokens.append("''")  # an opening or closing double quote: dropped later
            i += 1
            continue
        if c == "`":
            j = i + 1
            while j < n and text[j] == c:
                j += 1
            tokens.append(text[i:j])
            i = j
            continue
        m = _LETTER_DOTS.match(text, i)
        if m and (i == 0 or not text[i - 1].isalnum()):
            tokens.append(m.group())
            i = m.end()
            continue
        m = _APOS_SPAN.match(text, i)
        if m:
            tokens.extend(_split_contractions(m.group()))
            i = m.end()
            continue
        m = _WORD.match(text, i)
        if m:
            word = m.group()
            i = m.end()
            low = word.lower()
            if i < n and text[i] == "." and (low in _ABBREVIATIONS or (low == "no" and _NO_DIGIT.match(text, i))):
                word += "."
                i += 1
            tokens.extend(_word_tokens(word))
            continue
        if c in _BRACKETS:
            tokens.append(_BRACKETS[c])
            i += 1
            continue
        for pattern in (_QUESTION_BANG, _DOTS, _DASHES):
            m = pattern.match(text, i)
            if m:
                break
        if m:
            tok = m.group()
            if tok[0] == "." and len(tok) >= 3:
                tok = "..."
            elif tok[0] == "." and len(tok) == 2:
                tokens.append(".")
                tok = "."
            elif tok[0] == "-" and len(tok) >= 2:
                tok = "--"
            tokens.append(tok)
            i = m.end()
            continue
        if c == "*":
            j = i + 1
            while j < n and text[j] == "*":
                j += 1
            tokens.append(text[i:j])
            i = j
            continue
        tokens.append(c)  # any other symbol: its own token
        i += 1
    return tokens


def ptb_tokenize(text: str) -> str:
    """Tokenises one caption like the COCO caption toolkit (PTBTokenizer + punctuation removal), in Python.

    Args:
      text: a raw caption (newlines are treated as spaces, as the toolkit does).

    Returns:
      The lowercased tokens joined by single spaces, punctuation tokens removed, e.g.
      `"A man's (big) hat, isn't it?" -> "a man 's -lrb- big -rrb- hat is n't it"`.
    """
    tokens = _tokenize_line(text.replace("\n", " ").replace("\r", " "))
    return " ".join(t.lower() for t in tokens if t not in PTB_PUNCTUATION and t.lower() not in PTB_PUNCTUATION)


def ptb_tokenize_batch(texts: Iterable[str]) -> list[str]:
    """`ptb_tokenize` over a list of captions."""
    return [ptb_tokenize(t) for t in texts]
