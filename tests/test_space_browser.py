"""The Space as a visitor meets it: the real `python space/app.py` (offline, the bundled nets) in headless Chromium,
at desktop (1366x900) and phone (390x844) width. Screenshots of every tab are saved under test-artifacts/screenshots
(CONVHUB_SCREENSHOT_DIR overrides)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import PIL.Image
import pytest
from conftest import SpaceProcess

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZES = {"desktop": (1366, 900), "phone": (390, 844)}
VISITOR = {"X-Forwarded-For": "198.51.100.20"}
TABS = {"Classify": "#scoreboard", "Inside a net": "#feature-maps", "Translation": "#translation-plot",
        "Receptive field": "#rf-field", "Weight sharing": "#sharing-plot", "Skip connections": "#skips-plot",
        "Compare": "#compare-plot"}

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    process = SpaceProcess(ROOT / "space" / "app.py", tmp_path_factory.mktemp("log") / "app.log",
                           env={"HF_HUB_CACHE": str(tmp_path_factory.mktemp("hf-cache"))})
    yield process.url
    process.stop()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    folder = Path(os.environ.get("CONVHUB_SCREENSHOT_DIR") or ROOT / "test-artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(params=list(SIZES))
def page(request, browser, space):
    width, height = SIZES[request.param]
    # a visitor from another machine (as a proxy on this one says): this machine's own requests are not limited
    page = browser.new_page(viewport={"width": width, "height": height}, extra_http_headers=VISITOR)
    page.size_name = request.param
    page.goto(space, timeout=60_000)
    page.wait_for_selector("#examples img", timeout=60_000)
    yield page
    page.close()


def expect(page):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def click_example(page, caption: str) -> None:
    page.locator("#examples button", has_text=caption).first.click()


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")


def served_nets(page) -> list[str]:
    return page.eval_on_selector_all("table.scoreboard tr[data-net]", "rows => rows.map(r => r.dataset.net)")


def test_an_example_click_shows_every_net_with_the_vote_first(page, shots):
    import convhub

    click_example(page, "bird")
    page.wait_for_selector("table.scoreboard", timeout=60_000)
    assert served_nets(page) == list(convhub.ZOO)
    for net in convhub.ZOO:  # every net's row is on screen once scrolled to, with its bar
        row = page.locator(f"tr[data-net='{net}']")
        row.scroll_into_view_if_needed()
        expect(page)(row).to_be_visible()
        expect(page)(row.locator(".bar")).to_be_visible()
    vote = page.locator("[data-testid=vote]")
    expect(page)(vote).to_contain_text("nets say")
    expect(page)(vote).to_contain_text("True label: bird")
    first_row = page.locator("table.scoreboard tbody tr").first
    assert vote.bounding_box()["y"] < first_row.bounding_box()["y"]  # the vote above the rows
    assert page.locator("#seen img").evaluate("img => img.naturalWidth") == 128  # the 32x32 input, enlarged 4x
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(shots / f"{page.size_name}_classify.png"), full_page=True)


def test_every_example_caption_shows_whole_and_nothing_covers_the_pictures(page):
    """Captions were cut ("airplane (p…", "bird (dr…"), and the gallery's label and buttons sat over the pictures."""
    captions = page.locator("#examples .caption-label")
    assert captions.count() == page.locator("#examples img").count() > 0
    for caption in captions.all():
        assert caption.evaluate("c => c.scrollWidth <= c.clientWidth + 1 && c.scrollHeight <= c.clientHeight + 1"), \
            caption.inner_text()
    pictures = page.locator("#examples img").all()
    for cover in page.locator("#examples [data-testid=block-label], #examples .icon-button-wrapper").all():
        box = cover.bounding_box()
        if box is None:
            continue
        for picture in pictures:
            other = picture.bounding_box()
            assert min(box["x"] + box["width"], other["x"] + other["width"]) - max(box["x"], other["x"]) <= 0 \
                or min(box["y"] + box["height"], other["y"] + other["height"]) - max(box["y"], other["y"]) <= 0


def test_the_vote_comes_before_the_examples_on_a_phone(page):
    click_example(page, "airplane")
    page.wait_for_selector("table.scoreboard")
    vote_y = page.locator("[data-testid=vote]").bounding_box()["y"]
    examples_y = page.locator("#examples").bounding_box()["y"]
    assert vote_y < examples_y if page.size_name == "phone" else vote_y < page.viewport_size["height"]


def test_what_each_net_adds_is_shown_at_both_widths(page):
    """Its column has no room on a phone: there it goes under the net's name (phones had no word on it anywhere)."""
    click_example(page, "airplane")
    row = page.locator("table.scoreboard tr[data-net=net]")
    row.wait_for(timeout=60_000)
    shown = row.locator(".what-inline" if page.size_name == "phone" else "td.what")
    hidden = row.locator("td.what" if page.size_name == "phone" else ".what-inline")
    expect(page)(shown).to_be_visible()
    expect(page)(hidden).to_be_hidden()
    assert "3×3 convolutions" in shown.inner_text()


def test_every_tab_is_reachable_and_shows_its_content(page, shots):
    click_example(page, "bird")
    page.wait_for_selector("table.scoreboard")
    for tab, content in TABS.items():
        button = page.get_by_role("tab", name=tab, exact=True)
        expect(page)(button).to_be_visible()  # not behind a "..." menu
        button.click()
        expect(page)(page.locator(content)).to_be_visible(timeout=60_000)
        if content != "#scoreboard":
            page.locator(f"{content} img, {content} .js-plotly-plot").first.wait_for(timeout=60_000)
        assert no_horizontal_overflow(page), tab
        page.screenshot(path=str(shots / f"{page.size_name}_{tab.split()[0].lower()}.png"), full_page=True)


def test_kernels_are_never_cropped_and_feature_maps_follow_the_net(page):
    page.get_by_role("tab", name="Inside a net", exact=True).click()
    kernels = page.locator("#kernels img")
    kernels.wait_for(timeout=60_000)
    natural = kernels.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    box = kernels.bounding_box()
    assert natural[0] > 0 and abs(box["width"] / box["height"] - natural[0] / natural[1]) < 0.02  # not cropped
    container = page.locator("#kernels").bounding_box()
    assert box["x"] >= container["x"] - 1  # never cut off on the left
    hints = [page.locator(figure).evaluate("e => getComputedStyle(e, '::before').content")
             for figure in ("#kernels", "#feature-maps")]
    if page.size_name == "desktop":
        assert box["x"] + box["width"] <= container["x"] + container["width"] + 1
        assert hints == ["none", "none"]
    else:  # a phone: drawn at a readable size (shrunk to 390 px its labels were ~5 px), scrolled inside its box,
        # which phones show no scroll bar for until it is used: a line says the rest is there
        scroll_width, visible_width = page.locator("#kernels .matplotlib").evaluate(
            "e => [e.scrollWidth, e.clientWidth]")
        assert box["width"] >= 600 and scroll_width >= 600 > visible_width
        assert all("Scroll sideways" in hint for hint in hints), hints
    for cell in (page.locator("#layers th", has_text="params"), page.locator("#layers td", has_text="1,160")):
        lines = cell.evaluate("c => { const r = document.createRange(); r.selectNodeContents(c); "
                              "return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; }")
        assert lines == 1, cell.inner_text()  # never broken mid-word ("param/s") or mid-number
    maps = page.locator("#feature-maps img")
    maps.wait_for(timeout=60_000)
    before = maps.get_attribute("src")
    page.locator("#inside-net input").first.click()
    page.get_by_role("option", name="net_res", exact=True).click()
    expect(page)(maps).not_to_have_attribute("src", before, timeout=60_000)
    expect(page)(page.locator("#layers")).to_contain_text("conv3 → relu + skip")
    if page.size_name == "phone":  # no line over an empty box (before the figure comes, or for a net not loaded)
        emptied = page.locator("#feature-maps").evaluate("e => { e.querySelectorAll('img').forEach(i => i.remove()); "
                                                         "return getComputedStyle(e, '::before').content; }")
        assert emptied == "none"


def test_a_bad_upload_keeps_the_results_and_a_good_one_unmarks_the_example(page, tmp_path, shots):
    """A bad upload says why at the image and leaves the example shown, and marked, its results faded under a line
    saying whose they are (at full strength, they read as the bad file's); a good one replaces both (the example
    stayed marked as shown)."""
    click_example(page, "bird")
    page.wait_for_selector("table.scoreboard")
    vote = page.locator("[data-testid=vote]").inner_text()
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated, not a jpeg")
    page.get_by_role("button", name="Clear").first.click() if page.get_by_role(
        "button", name="Clear").count() else None
    page.locator("#image-input input[type=file]").set_input_files(str(corrupt))
    expect(page)(page.locator("#status")).to_contain_text("cannot read corrupt.jpg as an image", timeout=60_000)
    assert page.locator("[data-testid=vote]").inner_text() == vote  # the previous results stay, faded, saying so
    expect(page)(page.locator("#scoreboard .stale")).to_be_visible()  # (hidden text counts in to_contain_text)
    assert "previous image" in page.locator("#scoreboard .stale").inner_text()
    faded = "e => Number(getComputedStyle(e).opacity)"
    assert page.locator("table.scoreboard").evaluate(faded) < 0.5
    assert page.locator("#seen figure").evaluate(faded) < 0.5
    assert page.locator(".error").count() == 0  # no red error pills on the outputs
    page.screenshot(path=str(shots / f"{page.size_name}_bad_upload.png"))
    assert page.locator("#examples .thumbnail-item.selected").count() == 1  # the example still shown
    # ... in the image box too, not a broken picture, and the other tabs draw it
    expect(page)(page.locator("#image-input img")).to_have_count(1)
    page.wait_for_function("() => { const i = document.querySelector('#image-input img'); "
                           "return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    page.get_by_role("tab", name="Inside a net", exact=True).click()
    expect(page)(page.locator("#feature-maps img")).to_be_visible(timeout=60_000)
    expect(page)(page.locator("#layers")).to_contain_text("conv1")
    page.get_by_role("tab", name="Classify", exact=True).click()
    good = tmp_path / "good.png"
    PIL.Image.new("RGB", (64, 48), (120, 160, 220)).save(good)
    page.locator("#image-input input[type=file]").set_input_files(str(good))
    expect(page)(page.locator("#status")).to_have_text("", timeout=60_000)
    expect(page)(page.locator("[data-testid=vote]")).not_to_contain_text("True label", timeout=60_000)
    expect(page)(page.locator("#examples .thumbnail-item.selected")).to_have_count(0)  # no example marked as shown
    expect(page)(page.locator("#scoreboard .stale")).to_be_hidden()  # its own results, at full strength
    assert page.locator("table.scoreboard").evaluate("e => getComputedStyle(e).opacity") == "1"


def test_a_bad_first_upload_leaves_an_empty_box_and_says_why(page, tmp_path):
    """With no image before it, the box is emptied (not a broken picture) and nothing is shown as its results."""
    corrupt = tmp_path / "notes.png"
    corrupt.write_text("not an image at all")
    page.locator("#image-input input[type=file]").set_input_files(str(corrupt))
    expect(page)(page.locator("#status")).to_contain_text("cannot read notes.png as an image", timeout=60_000)
    expect(page)(page.locator("#image-input img")).to_have_count(0)
    expect(page)(page.locator("#scoreboard .vote.empty")).to_be_visible()
    assert page.locator("#scoreboard .stale").count() == 0


def test_sliders_redraw_on_typed_values_and_arrow_keys(page):
    """Not only on a drag's release: a value typed into a slider's box, or set with the arrow keys, redraws its
    figure (the figure stayed at the old value while the slider showed the new one), and typing a value digit by
    digit raises no error on the way."""
    page.get_by_role("tab", name="Translation", exact=True).click()
    preview = page.locator("#shifted img")
    expect(page)(preview).to_be_visible(timeout=60_000)
    before = preview.get_attribute("src")
    box = page.locator("#shift input[type=number]")
    box.fill("")
    box.type("-5")
    expect(page)(preview).not_to_have_attribute("src", before, timeout=60_000)
    page.wait_for_function("() => { const plot = document.querySelector('#translation-plot .js-plotly-plot'); "
                           "return plot && plot.layout.shapes[0].x0 === -5; }", timeout=60_000)  # its dashed line
    # inside the first layers: net's conv map moved with the image, fc's units did not
    expect(page)(page.locator("#moved-net-caption")).to_contain_text("5 px left", timeout=60_000)
    expect(page)(page.locator("#moved-net-caption")).to_contain_text(re.compile(r"moved back r\s=\s1\.000"))
    expect(page)(page.locator("#moved-fc-caption")).to_contain_text("5 px left")
    expect(page)(page.locator("#moved-fc-caption")).to_contain_text(re.compile(r"r\s=\s0\.\d{3}"))
    for picture in ("#moved-net img", "#moved-fc img"):
        expect(page)(page.locator(picture)).to_be_visible()
    page.get_by_role("tab", name="Weight sharing", exact=True).click()
    text = page.locator("#sharing-text")
    expect(page)(text).to_contain_text("Conv2d(3, 16, 3)", timeout=60_000)
    page.locator("#sharing-out input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    expect(page)(text).to_contain_text("Conv2d(3, 17, 3)", timeout=60_000)
    side = page.get_by_label("Image side (pixels)").first
    side.fill("")
    side.type("128")  # 1, 12, 128 on the way
    expect(page)(text).to_contain_text("On a 128×128 image", timeout=60_000)
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()


def test_the_skip_connections_slider_redraws_the_gradients_of_a_stack_that_deep(page):
    page.get_by_role("tab", name="Skip connections", exact=True).click()
    text = page.locator("#skips-text")
    expect(page)(text).to_contain_text("100 blocks: the largest gradient", timeout=60_000)
    box = page.locator("#skip-blocks input[type=number]")
    box.fill("")
    box.type("3")
    expect(page)(text).to_contain_text("3 blocks: the largest gradient", timeout=60_000)
    page.wait_for_function("() => { const plot = document.querySelector('#skips-plot .js-plotly-plot'); "
                           "return plot && plot.data.every(trace => trace.x.length === 3); }", timeout=60_000)
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()


def test_pictures_side_by_side_line_up_under_captions_of_any_length(page):
    """On a phone the Receptive field's first caption wraps onto a line more than the second, and its picture sat
    that much lower than its neighbour."""
    pairs = {"Receptive field": ("#rf-map", "#rf-field"), "Translation": ("#moved-net", "#moved-fc")}
    side_by_side = 0
    for tab, ids in pairs.items():
        page.get_by_role("tab", name=tab, exact=True).click()
        for element in ids:
            page.locator(f"{element} img").wait_for(timeout=60_000)
        first, second = (page.locator(element).bounding_box() for element in ids)
        if abs(first["y"] - second["y"]) > first["height"] / 2:  # one above the other: a narrow screen stacks them
            continue
        side_by_side += 1
        assert abs(first["y"] - second["y"]) <= 1 and abs(first["height"] - second["height"]) <= 1, (tab, first, second)
    assert side_by_side >= 1  # the receptive field's pair is side by side at both widths


def test_clicking_a_unit_shows_its_receptive_field(page):
    """Even a corner unit: Gradio's label and buttons sat over the map's top row, and the buttons took its clicks."""
    page.get_by_role("tab", name="Receptive field", exact=True).click()
    text = page.locator("#rf-text")
    expect(page)(text).to_contain_text("sees", timeout=60_000)
    before = text.inner_text()
    map_image = page.locator("#rf-map img")
    map_image.wait_for()
    # where the picture is drawn inside its element (centred, scaled down to fit), then its top-right unit
    left, top, width, height = map_image.evaluate("""img => {
        const box = img.getBoundingClientRect(), scale = Math.min(1, box.width / img.naturalWidth,
                                                                  box.height / img.naturalHeight);
        const width = img.naturalWidth * scale, height = img.naturalHeight * scale;
        return [(box.width - width) / 2, (box.height - height) / 2, width, height]; }""")
    map_image.click(position={"x": left + width * 0.97, "y": top + height * 0.03})
    expect(page)(text).not_to_have_text(before, timeout=60_000)
    expect(page)(text).to_contain_text("(8×16×16): unit (0, 15)")
    chosen = text.inner_text()
    page.get_by_role("tab", name="Classify", exact=True).click()  # away and back: the unit chosen stays (it went
    click_example(page, "bird")  # back to the middle layer's middle unit), drawn on the new image
    map_before = map_image.get_attribute("src")
    page.get_by_role("tab", name="Receptive field", exact=True).click()
    expect(page)(map_image).not_to_have_attribute("src", map_before, timeout=60_000)
    assert text.inner_text() == chosen


def test_a_grey_drawing_comes_with_a_word_why(page):
    """All nets call the grey drawing of a bird an airplane; the page says why instead of leaving it unexplained."""
    click_example(page, "bird (drawing)")
    expect(page)(page.locator("#scoreboard .note")).to_contain_text("almost no colour", timeout=60_000)
    expect(page)(page.locator("[data-testid=vote]")).to_contain_text("True label: bird")


def test_compare_labels_are_inside_the_plot_and_never_overlap(page):
    import convhub

    page.get_by_role("tab", name="Compare", exact=True).click()
    page.locator("#compare-plot .js-plotly-plot").wait_for(timeout=60_000)
    page.locator("#compare-plot g.annotation-text-g").first.wait_for(timeout=60_000)
    labels = [r for r in page.eval_on_selector_all(
        "#compare-plot g.annotation-text-g",
        "gs => gs.map(g => {const r = g.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, "
        "g.textContent]})") if r[4] in convhub.ZOO]
    assert sorted(r[4] for r in labels) == sorted(convhub.ZOO)
    plot = page.locator("#compare-plot .js-plotly-plot").bounding_box()
    for left, top, right, bottom, name in labels:
        assert plot["x"] - 1 <= left and right <= plot["x"] + plot["width"] + 1, name  # not cut off at the sides
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_x <= 1 or overlap_y <= 1, (a[4], b[4])
    marks = page.eval_on_selector_all(  # every net's mark and the book's hollow ones
        "#compare-plot g.points path.point",
        "ps => ps.map(p => {const r = p.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]})")
    assert len(marks) >= len(convhub.ZOO)
    for left, top, right, bottom, name in labels:  # no label hides a mark (a phone's x axis is short): a label
        for mark in marks:  # may graze a mark's edge, never cover a quarter of it
            overlap_x = max(0, min(right, mark[2]) - max(left, mark[0]))
            overlap_y = max(0, min(bottom, mark[3]) - max(top, mark[1]))
            assert overlap_x * overlap_y <= 0.25 * (mark[2] - mark[0]) * (mark[3] - mark[1]), (name, mark)


def test_compare_scale_switch_is_clear_of_plotlys_toolbar_and_a_linear_axis_starts_at_zero(page):
    """The switch sat where Plotly's toolbar covered it on a phone, and a linear axis began at -2,000,000 parameters."""
    page.get_by_role("tab", name="Compare", exact=True).click()
    page.locator("#compare-plot .js-plotly-plot").wait_for(timeout=60_000)
    page.locator("#compare-plot").hover()  # the toolbar shows while the pointer is over the plot
    toolbar = page.locator("#compare-plot .modebar").bounding_box()
    linear = page.locator("#compare-plot .updatemenu-button", has_text="linear scale")
    for button in (linear, page.locator("#compare-plot .updatemenu-button", has_text="log scale")):
        box = button.bounding_box()
        assert box["y"] >= toolbar["y"] + toolbar["height"] or box["y"] + box["height"] <= toolbar["y"] \
            or box["x"] >= toolbar["x"] + toolbar["width"] or box["x"] + box["width"] <= toolbar["x"], (box, toolbar)
    linear.click()
    first_tick = page.locator("#compare-plot g.xtick text").first
    expect(page)(first_tick).to_have_text("0", timeout=10_000)


def test_compare_table_fits_the_screen_with_every_column(page):
    """On a phone the table scrolled sideways and its parameter counts were cut at the screen's edge; every column
    is now in view, down to a 360 px screen."""
    import convhub.card

    page.get_by_role("tab", name="Compare", exact=True).click()
    table = page.locator("#compare-table table")
    table.wait_for(timeout=60_000)
    widths = [page.viewport_size["width"]] + ([360] if page.size_name == "phone" else [])
    for width in widths:
        page.set_viewport_size({"width": width, "height": page.viewport_size["height"]})
        assert table.evaluate("t => t.scrollWidth <= t.clientWidth + 1"), (width, table.evaluate("t => [t.scrollWidth, t.clientWidth, [...t.querySelectorAll('th')].map(c => c.getBoundingClientRect().width)]"))
        box = table.bounding_box()
        right = box["x"] + box["width"] + 1
        for header in ("net", "ours (val)", "book (val)", "params", "epochs"):
            cell = table.locator("th", has_text=header).first.bounding_box()
            assert box["x"] - 1 <= cell["x"] and cell["x"] + cell["width"] <= right, (header, width)
        assert no_horizontal_overflow(page), width
    row = table.locator("tr", has_text="net_dropout")
    assert row.locator("td").nth(2).inner_text().strip() == f"{convhub.card.BOOK_VAL_ACCURACY['net_dropout']:.2f}"
    assert row.locator("td").nth(3).inner_text().strip() == "38,386"  # the book's count, whole


def test_a_visitor_over_the_request_limit_is_told_when_to_come_back(browser, tmp_path):
    """The page shows the Space's 429 as it words it (Gradio's toast reads its "detail"), not "Connection errored
    out"."""
    space = SpaceProcess(ROOT / "space" / "app.py", tmp_path / "app.log",
                         env={"CONVHUB_CLIENT_BURST": "1", "CONVHUB_CLIENT_RATE": "0.05"})
    page = browser.new_page(viewport={"width": 1366, "height": 900}, extra_http_headers=VISITOR)
    try:
        page.goto(space.url, timeout=60_000)
        page.wait_for_selector("#examples img", timeout=60_000)
        # one request at once: the second click's is refused. A click while the last one is computing is dropped by
        # the page itself (on a busy machine, 300 ms apart, too many were), so they are a second apart.
        for button in page.locator("#examples button").all()[:4]:
            button.click()
            page.wait_for_timeout(1000)
        toast = page.locator(".toast-body", has_text="Too many requests from your address").first
        expect(page)(toast).to_contain_text("the Space takes 1 at once from one address, then 0.05 a second. "
                                            "Try again in", timeout=30_000)
    finally:
        page.close()
        space.stop()
