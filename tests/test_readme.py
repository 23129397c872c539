"""The README and docs/: the README's test command is exactly what CI runs, the README stays short,
and every relative link in README.md and docs/*.md resolves (file and #anchor)."""

import glob
import os
import re

# The repository root, computed here rather than taken from conftest, so that these checks of text
# files need no TensorFlow import.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
MAX_README_LINES = 300

_FENCE = re.compile(r'^\s*(```|~~~)')
_HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
# [text](target) and ![alt](target); the text may span lines; an optional "title" after the target.
_LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+"[^"]*")?\s*\)')
_INLINE_CODE = re.compile(r'(`+)(?:(?!\1).)+?\1', re.S)
_EXTERNAL = re.compile(r'^(https?://|mailto:)', re.I)


def _markdown_files():
    return [README] + sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))


def _prose(text):
    """The text with fenced code blocks and inline code blanked out (links in code are not links)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            lines.append('')
        else:
            lines.append('' if in_fence else line)
    return _INLINE_CODE.sub(lambda m: ' ' * len(m.group(0)), '\n'.join(lines))


def slug(heading):
    """GitHub's anchor for a heading: lowercase, only letters, digits, spaces, hyphens and
    underscores kept, spaces turned into hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path):
    """The anchors of a markdown file's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    found, seen = set(), {}
    in_fence = False
    for line in open(path, encoding='utf-8').read().splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else '%s-%d' % (base, count))
    return found


def relative_links(path):
    """(line number, target) of every link in a file that is not http(s):// or mailto:."""
    text = _prose(open(path, encoding='utf-8').read())
    for match in _LINK.finditer(text):
        target = match.group(1)
        if not _EXTERNAL.match(target):
            yield text.count('\n', 0, match.start()) + 1, target


def test_ci_runs_the_readme_test_command():
    readme = open(README).read()
    ci = open(os.path.join(REPO, '.ci', 'run')).read()
    command = [line for line in ci.splitlines() if 'pytest' in line]
    assert len(command) == 1
    assert command[0] in readme


def test_readme_is_at_most_300_lines():
    lines = open(README, encoding='utf-8').read().splitlines()
    assert len(lines) <= MAX_README_LINES, (
        'README.md has %d lines; move detail into docs/' % len(lines))


def test_every_relative_link_resolves():
    broken = []
    for source in _markdown_files():
        name = os.path.relpath(source, REPO)
        for line, target in relative_links(source):
            file_part, _, anchor = target.partition('#')
            linked = (os.path.normpath(os.path.join(os.path.dirname(source), file_part))
                      if file_part else source)
            if not os.path.exists(linked):
                broken.append('%s:%d: %s: no file %s' % (name, line, target,
                                                         os.path.relpath(linked, REPO)))
            elif anchor and (not linked.endswith('.md') or anchor not in anchors(linked)):
                broken.append('%s:%d: %s: no heading with anchor #%s in %s'
                              % (name, line, target, anchor, os.path.relpath(linked, REPO)))
    assert not broken, '\n'.join(broken)


def test_the_link_check_sees_links_and_anchors():
    """The checks above are not vacuous: the README links to the docs pages and their images show."""
    targets = {target for _, target in relative_links(README)}
    assert 'docs/aofp.md' in targets
    assert 'docs/results.md#aofp-on-the-real-subset' in targets
    assert 'aofp_smoke_top1_vs_flops.png' in {
        t for _, t in relative_links(os.path.join(REPO, 'docs', 'export.md'))}
    assert slug('AOFP: `aofp/aofp_standalone.py`') == 'aofp-aofpaofp_standalonepy'
    assert slug("Is AOFP's approximation good? `oracle` on the real subset") == (
        'is-aofps-approximation-good-oracle-on-the-real-subset')
    assert 'set-up-two-commands' in anchors(README)


def test_every_docs_page_has_a_title_and_links_both_ways():
    readme_targets = {target.partition('#')[0] for _, target in relative_links(README)}
    for page in sorted(glob.glob(os.path.join(REPO, 'docs', '*.md'))):
        name = os.path.basename(page)
        first = open(page, encoding='utf-8').read().splitlines()[0]
        assert first.startswith('# '), '%s does not start with a # title' % name
        back = {target.partition('#')[0] for _, target in relative_links(page)}
        assert '../README.md' in back, '%s has no link back to ../README.md' % name
        assert 'docs/' + name in readme_targets, 'README.md does not link to docs/%s' % name
