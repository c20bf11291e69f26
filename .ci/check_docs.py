#!/usr/bin/env python3
"""Cheap checks of the Markdown a reader meets, over every *.md in the repository:

1. Relative links and images resolve to a file inside the repository (a clone has
   nothing outside it), and no path in backticks leaves the repository (`../x`).
2. No table is split by a blank line (the rows after it render as text).
3. Every option and variable a document gives a project script on one line
   (`loadtest/campaign.py --quick`, `SIZES=2000 loadtest/bench-search.sh`)
   appears in that script.

    python3 .ci/check_docs.py          # exits 1 and names file:line for each problem
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
SCRIPT = re.compile(r"(?<![\w/.-])((?:\./)?(?:loadtest|observability|helm|postman|\.ci)/[\w./-]+\.(?:py|sh)|\.ci/(?:run|repeat))\b")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]+)")
ENV = re.compile(r"(?<![\w$])([A-Z][A-Z0-9_]{2,})=")


def markdown_files():
    out = subprocess.run(["git", "ls-files", "*.md", "**/*.md"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return sorted(set(out))


def lines_outside_fences(text):
    """(line number, line, inside a code fence) for every line."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            yield n, line, True
            continue
        yield n, line, fenced


def inside_repo(path):
    real = os.path.realpath(path)
    return real == ROOT or real.startswith(ROOT + os.sep)


def check_links(md, text, problems):
    base = os.path.dirname(os.path.join(ROOT, md))
    for n, line, fenced in lines_outside_fences(text):
        if fenced:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(base, target.split("#", 1)[0]))
            if not inside_repo(path):
                problems.append(f"{md}:{n}: link {target} leaves the repository")
            elif not os.path.exists(path):
                problems.append(f"{md}:{n}: link {target} does not resolve ({os.path.relpath(path, ROOT)})")
        for span in CODE_SPAN.findall(line):
            if re.match(r"^\.\./[\w./-]+$", span) and not inside_repo(os.path.join(base, span)):
                problems.append(f"{md}:{n}: `{span}` points outside the repository (a clone does not have it)")


def check_tables(md, text, problems):
    lines = list(lines_outside_fences(text))
    for i in range(2, len(lines)):
        n, line, fenced = lines[i]
        _, blank, _ = lines[i - 1]
        _, before, before_fenced = lines[i - 2]
        if fenced or before_fenced or blank.strip():
            continue
        if line.lstrip().startswith("|") and before.lstrip().startswith("|"):
            following = lines[i + 1][1] if i + 1 < len(lines) else ""
            if not re.match(r"^\s*\|\s*:?-{3,}", following):
                problems.append(f"{md}:{n}: a blank line splits a table (this row would render as text)")


def script_source(path):
    """A script's text, and for a Python script that of the modules and
    packages beside it that it imports (loadtest/campaign.py's options live
    in its package, otus_campaign/)."""
    text = open(path, encoding="utf-8", errors="replace").read()
    if not path.endswith(".py"):
        return text
    here = os.path.dirname(path)
    parts = [text]
    for module in sorted(set(re.findall(r"^\s*(?:from|import)\s+(\w+)", text, re.M))):
        package = os.path.join(here, module)
        files = (sorted(glob.glob(os.path.join(package, "*.py"))) if os.path.isdir(package)
                 else [package + ".py"] if os.path.isfile(package + ".py") else [])
        parts += [open(f, encoding="utf-8", errors="replace").read() for f in files]
    return "\n".join(parts)


def check_script_options(md, text, problems):
    for n, line, fenced in lines_outside_fences(text):
        candidates = [line] if fenced else CODE_SPAN.findall(line)
        for snippet in candidates:
            for m in SCRIPT.finditer(snippet):
                script = m.group(1).removeprefix("./")
                path = os.path.join(ROOT, script)
                if not os.path.isfile(path):
                    problems.append(f"{md}:{n}: {script} does not exist")
                    continue
                source = script_source(path)
                # Options after the script's name (up to a pipe, a ; or a comment), and
                # variables set before it on the same command.
                tail = re.split(r"\s[|;#]|&&", snippet[m.end():], maxsplit=1)[0]
                for option in OPTION.findall(tail):
                    if option not in source:
                        problems.append(f"{md}:{n}: {script} has no option {option}")
                head = re.split(r"[|;]|&&", snippet[:m.start()])[-1]
                for name in ENV.findall(head):
                    if not re.search(rf"\b{name}\b", source):
                        problems.append(f"{md}:{n}: {script} does not read {name}")


def main():
    problems = []
    files = markdown_files()
    for md in files:
        text = open(os.path.join(ROOT, md), encoding="utf-8").read()
        check_links(md, text, problems)
        check_tables(md, text, problems)
        check_script_options(md, text, problems)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{len(files)} Markdown files: links inside the repository resolve, no split table, "
          "every script option and variable named exists")


if __name__ == "__main__":
    main()
