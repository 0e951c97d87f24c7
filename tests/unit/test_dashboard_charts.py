"""The dashboard's SVG column chart (app/dashboard/charts.py): a pure function, read back as XML."""

import xml.etree.ElementTree as ET

import pytest

from app.dashboard.charts import PLOT_TOP, TICKS_HEIGHT, Column, Tick, column_chart, nice_ceiling

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))  # also proves the markup is well-formed XML


def bars(svg: ET.Element) -> list[ET.Element]:
    return [rect for rect in svg.iter(f"{SVG}rect") if rect.get("class") == "bar"]


def texts(svg: ET.Element, cls: str) -> list[ET.Element]:
    return [text for text in svg.iter(f"{SVG}text") if text.get("class", "").split()[0] == cls]


@pytest.mark.parametrize(("value", "expected"), [
    (0, 1), (0.4, 1), (1, 1), (1.5, 2), (2, 2), (3, 5), (5, 5), (6, 10), (10, 10), (11, 20),
    (20, 20), (21, 50), (99, 100), (100, 100), (101, 200), (1619, 2000), (8000, 10000),
])
def test_nice_ceiling(value, expected):
    assert nice_ceiling(value) == expected


def test_columns_are_as_tall_as_their_share_of_a_round_maximum():
    columns = [Column(4, "a"), Column(0, "b"), Column(10, "c"), Column(7, "d")]
    svg = parse(column_chart(columns, label="Calls", height=100, unit="calls/h", gap=0.2))
    drawn = bars(svg)
    # Zero draws nothing; the scale goes to 10 (a round number at least the largest value).
    assert [rect.find(f"{SVG}title").text for rect in drawn] == ["a", "c", "d"]
    assert [float(rect.get("height")) for rect in drawn] == [40.0, 100.0, 70.0]
    # Each column stands on the bottom of the plot, which is 100 px high.
    assert all(float(r.get("y")) + float(r.get("height")) == pytest.approx(100) for r in drawn)
    # One user unit per column, the gap split on both sides.
    assert [float(rect.get("x")) for rect in drawn] == [0.1, 2.1, 3.1]
    assert {rect.get("width") for rect in drawn} == {"0.8"}
    plot = next(node for node in svg.iter(f"{SVG}svg") if node.get("class") == "plot")
    assert plot.get("viewBox") == "0 0 4 100"
    assert plot.get("preserveAspectRatio") == "none"
    assert [text.text for text in texts(svg, "scale")] == ["10 calls/h"]
    assert svg.get("height") == str(PLOT_TOP + 100 + TICKS_HEIGHT)


def test_a_column_without_data_is_marked_not_drawn_as_zero():
    svg = parse(column_chart([Column(3, "x"), Column(None, "10:05: no sample")], label="R"))
    marks = [rect for rect in svg.iter(f"{SVG}rect") if rect.get("class") == "nodata"]
    assert len(marks) == 1 and marks[0].get("x") == "1"
    assert marks[0].find(f"{SVG}title").text == "10:05: no sample"
    assert len(bars(svg)) == 1


@pytest.mark.parametrize("columns", [
    [], [Column(None, "none")], [Column(0, "zero"), Column(0, "zero")],
])
def test_nothing_to_draw_is_still_a_chart(columns):
    svg = parse(column_chart(columns, label="Empty"))
    assert bars(svg) == []
    assert [text.text for text in texts(svg, "scale")] == ["1"]


def test_ticks_lines_and_their_anchors():
    columns = [Column(1, str(i)) for i in range(100)]
    ticks = [Tick(0, "left"), Tick(50, "middle", minor=True), Tick(100, "right"),
             Tick(24, "", line=True), Tick(24, "Thu 26", align="start")]
    svg = parse(column_chart(columns, ticks, label="T"))
    placed = {text.text: text for text in texts(svg, "tick")}
    assert placed["left"].get("text-anchor") == "start"
    assert placed["middle"].get("text-anchor") == "middle"
    assert placed["middle"].get("x") == "50.000%"
    assert placed["middle"].get("class") == "tick minor"
    assert placed["right"].get("text-anchor") == "end"
    assert placed["Thu 26"].get("text-anchor") == "start" and placed["Thu 26"].get("dx") == "3"
    lines = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "mark"]
    assert [(line.get("x1"), line.get("x2")) for line in lines] == [("24.000%", "24.000%")]
    assert "" not in placed  # a tick without text draws only its line


def test_every_text_is_escaped():
    payload = '<script>alert(1)</script>"&'
    svg = parse(column_chart([Column(2, payload)], [Tick(0, payload)], label=payload,
                             unit=payload, chart_id='x" onload="alert(1)'))
    assert svg.get("aria-label") == payload
    assert svg.find(f"{SVG}title").text == payload
    assert bars(svg)[0].find(f"{SVG}title").text == payload
    assert texts(svg, "tick")[0].text == payload
    assert texts(svg, "scale")[0].text == "2 " + payload
    assert svg.get("id") == 'x" onload="alert(1)' and svg.get("onload") is None
    assert not list(svg.iter(f"{SVG}script"))
