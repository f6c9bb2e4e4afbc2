import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.core.matching import PatternIndex, matches

CASES = [
    # exact names
    ("order.created", "order.created", True),
    ("order.created", "order.created.v2", False),
    ("order.created", "order", False),
    ("order", "order.created", False),
    ("order.created", "Order.Created", False),
    # star = any run of characters, anchored at both ends
    ("order.*", "order.created", True),
    ("order.*", "order.item.added", True),
    ("order.*", "order.", True),
    ("order.*", "orders.created", False),
    ("order.*", "order", False),
    ("order.*", "my.order.created", False),
    ("*.created", "order.created", True),
    ("*.created", "order.created.late", False),
    ("a*b*c", "a-x-b-y-c", True),
    ("a*b*c", "acb", False),
    # Moodle-style backslashed names
    (r"\core\event\user_*", r"\core\event\user_created", True),
    (r"\core\event\user_*", r"\core\event\user_loggedin", True),
    (r"\core\event\user_*", r"\core\event\course_created", False),
    (r"\core\event\user_*", r"core\event\user_created", False),
    (r"\core\event\user_created", r"\core\event\user_created", True),
    # regex metacharacters are literal
    ("a.b", "axb", False),
    ("a.b*", "axb", False),
    ("a.b*", "a.bc", True),
    ("a+b", "a+b", True),
    ("a+b", "aab", False),
    ("a+b*", "aab", False),
    ("a+b*", "a+bc", True),
    ("(x)|y*", "(x)|yz", True),
    ("(x)|y*", "x", False),
    ("[ab]*", "a", False),
    ("[ab]*", "[ab]c", True),
    ("a?*", "a", False),
    ("a?*", "a?!", True),
    # star alone matches anything
    ("*", "order.created", True),
    ("*", r"\core\event\user_created", True),
    ("*", "x", True),
    ("*", "", True),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), CASES)
def test_matches(pattern, name, expected):
    assert matches(pattern, name) is expected


def test_the_index_agrees_with_trying_each_pattern_on_every_case():
    patterns = [pattern for pattern, _, _ in CASES]
    index = PatternIndex(patterns)
    for _, name, _ in CASES:
        expected = [i for i, pattern in enumerate(patterns) if matches(pattern, name)]
        assert index.positions(name) == expected, name


PIECES = st.sampled_from(["a", "b", ".", "ab", "*", "\\", "x.y"])


@given(
    patterns=st.lists(st.lists(PIECES, max_size=5).map("".join), max_size=30),
    names=st.lists(
        st.lists(st.sampled_from(["a", "b", ".", "x", "y", "\\"]), max_size=8).map("".join),
        min_size=1,
        max_size=10,
    ),
)
def test_the_index_agrees_with_trying_each_pattern(patterns, names):
    index = PatternIndex(patterns)
    for name in names:
        expected = [i for i, pattern in enumerate(patterns) if matches(pattern, name)]
        assert index.positions(name) == expected
