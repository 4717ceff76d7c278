"""Every decision id the code and the READMEs cite (V3, T13, L5, D26, S4, B5, and ranges such as V12-V15) has a row
in docs/decisions.md, so a citation always resolves inside the repository; the README and the pages of docs/ link
only to files and headings that exist, the README stays a front page, and user documentation carries no issue
numbers or dated history."""
import io
import re
import tokenize
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DECISIONS = REPO / "docs" / "decisions.md"
FOLDERS = ("core", "baselines", "vaal", "ta_vaal", "daal", "lada", "segmentation", "tests")

# A prefix per source (VAAL, TA-VAAL, LADA, DAAL, segmentation, baselines), one or two digits, optionally a range
# with the same prefix ("V12-V15"). Not preceded by a word character, a dot or a hyphen (FC1, TF32, fig-V1), not
# followed by one (D1x, "L2-normalised") nor by "norm" ("the L2 norm").
CITATION = re.compile(r"(?<![\w.-])([VTLDSB])(\d{1,2})(?:-\1(\d{1,2}))?(?![\w-]|\s+norm)")


def cited_ids(text: str) -> set[str]:
    found = set()
    for prefix, first, last in CITATION.findall(text):
        found |= {f"{prefix}{number}" for number in range(int(first), int(last or first) + 1)}
    return found


def prose(path: Path) -> str:
    """The text a reader sees as prose: a Python file's comments and strings (docstrings included), so that a
    variable or a shape named B1 in the code is not taken for a citation; a Markdown file whole."""
    text = path.read_text()
    if path.suffix == ".md":
        return text
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    return "\n".join(token.string for token in tokens if token.type in (tokenize.COMMENT, tokenize.STRING))


def citing_files() -> list[Path]:
    files = [path for folder in FOLDERS for suffix in ("*.py", "*.md") for path in (REPO / folder).rglob(suffix)]
    return [*files, REPO / "README.md", *(path for path in (REPO / "docs").glob("*.md") if path != DECISIONS)]


def documented_ids() -> list[str]:
    """The first cell of every table row of docs/decisions.md that names an id."""
    return re.findall(r"^\| ([VTLDSB]\d{1,2}) \|", DECISIONS.read_text(), flags=re.MULTILINE)


def test_the_citation_pattern_reads_ids_and_ranges_but_not_other_names():
    assert cited_ids("(V3, V4) decision T13; L5: the code (REFERENCES V12-V15 and B5), D28).") == {
        "V3", "V4", "T13", "L5", "V12", "V13", "V14", "V15", "B5", "D28"}
    assert cited_ids("L2-normalised rows, the L2 norm of a scalar, FC1 576, TF32, FP32, fig-V1") == set()


def test_prose_of_python_skips_the_code_itself(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text('"""Doc (V9)."""\nB1 = 3  # seeded (T13)\nshape = (B1, 4)\n')
    assert cited_ids(prose(path)) == {"V9", "T13"}


def test_every_cited_decision_id_has_a_row_in_docs_decisions():
    cited = {}
    for path in citing_files():
        for decision in cited_ids(prose(path)):
            cited.setdefault(decision, path.relative_to(REPO))
    documented = set(documented_ids())
    missing = {decision: str(path) for decision, path in cited.items() if decision not in documented}
    assert cited, "no decision id found: the citation pattern or the file list is wrong"
    assert not missing, f"cited ids without a row in docs/decisions.md (id: first file citing it): {missing}"


def test_each_decision_has_one_row():
    rows = documented_ids()
    assert len(rows) == len(set(rows)), sorted(decision for decision in set(rows) if rows.count(decision) > 1)


# The user documentation: the front page and the topic pages.
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FRONT_PAGE_LINES = 170
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
# "issue 21", "issues 20-23", "#14": history belongs to the tracker; a measured figure names its machine instead.
HISTORY = re.compile(r"\bissues? \d+|(?<![\w&/])#\d+\b|\b20\d\d-\d\d-\d\d\b", flags=re.IGNORECASE)


def links(page: Path) -> list[str]:
    """The targets of the page's markdown links outside code blocks, web addresses left out."""
    return [target for target in LINK.findall(FENCE.sub("", page.read_text()))
            if not re.match(r"[a-z]+:", target)]


def anchors(page: Path) -> set[str]:
    """GitHub's ids of the page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_the_anchor_of_a_heading_drops_punctuation_as_github_does(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Checking a GPU machine: ./reproduce.sh gpucheck\n```\n# not a heading\n```\n")
    assert anchors(page) == {"top", "checking-a-gpu-machine-reproducesh-gpucheck"}


def test_every_link_of_the_readme_and_docs_reaches_a_file_and_heading_that_exist():
    broken = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, f"links to missing files or headings: {broken}"


def test_the_readme_is_a_front_page():
    lines = len((REPO / "README.md").read_text().splitlines())
    assert lines <= FRONT_PAGE_LINES, f"README.md has {lines} lines: move detail to a page of docs/"


def test_user_documentation_has_no_issue_numbers_or_dates():
    found = [f"{page.relative_to(REPO)}: {match}" for page in PAGES for match in HISTORY.findall(page.read_text())]
    assert not found, f"issue numbers or dates in user documentation (say what machine made a figure instead): {found}"
