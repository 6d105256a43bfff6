# SPDX-License-Identifier: MIT
"""The project around the binary: docs/cli.md against the command line it documents (so that
neither drifts from the other), the man page built from it, the links of the user docs, and
what `meson install` puts where."""

import json
import os
import re
import shutil
import subprocess

from harness import Skip, check, check_eq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI_MD = os.path.join(ROOT, "docs", "cli.md")
OPTION = re.compile(r"--[a-z][a-z0-9-]*")

# src/main.c's getopt tables, by the command that parses each.
TABLES = {"ca_opts": "ca init", "check_opts": "check", "run_opts": "run", "env_opts": "env",
          "rules_opts": "rules", "admin_opts": "admin get"}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _table_options():
    """{command: set of long options} from the struct option tables in src/main.c."""
    src = _read(os.path.join(ROOT, "src", "main.c"))
    found = {}
    for m in re.finditer(r"static const struct option (\w+)\[\] = \{(.*?)\n\};", src, re.S):
        check(m.group(1) in TABLES, "src/main.c has an option table this test does not know: "
              "%s (add it to TABLES)" % m.group(1))
        found[TABLES[m.group(1)]] = {"--" + n for n in re.findall(r'\{"([a-z0-9-]+)"', m.group(2))}
    check_eq(sorted(found), sorted(TABLES.values()), "commands with an option table")
    return found


def _usage_commands(usage):
    """{command: text of its usage lines} from `airlock --help`: a line "  airlock NAME ..."
    starts a command (NAME: the words before the first argument), deeper lines continue it."""
    commands, current = {}, None
    for line in usage.splitlines():
        if line.startswith("  airlock "):
            words = line.split()[1:]
            name = []
            for w in words:
                if w[0] in "[(" or w.isupper() or (name and w.startswith("-")):
                    break
                name.append(w)
            current = " ".join(name)
            commands[current] = line
        elif line.startswith("    ") and current:
            commands[current] += "\n" + line
    return commands


def _doc_sections(text):
    """{command: list of options documented as "- `--name ...`" entries} for each
    "### airlock COMMAND" section of docs/cli.md."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            m = re.match(r"### airlock (.+)$", line)
            current = m.group(1) if m else None
            if current is not None:
                sections[current] = []
        elif current is not None:
            m = re.match(r"- `(--[a-z][a-z0-9-]*)", line)
            if m:
                sections[current].append(m.group(1))
    return sections


def _synopsis(text):
    m = re.search(r"^## Synopsis\n\n```\n(.*?)\n```", text, re.S | re.M)
    check(m, "docs/cli.md has no ## Synopsis code block")
    return m.group(1)


def test_cli_doc_documents_every_option_of_every_command(env):
    r = env.run_cli(["--help"])
    check_eq(r.returncode, 0, "exit code of airlock --help")
    usage = _usage_commands(r.stdout.decode())
    tables = _table_options()
    text = _read(CLI_MD)
    docs = _doc_sections(text)
    synopsis = _synopsis(text).splitlines()
    for line in r.stdout.decode().splitlines()[1:]:
        check(line[2:] in synopsis,
              "docs/cli.md's synopsis lacks this line of `airlock --help`: %r" % line[2:])
    for cmd, table in tables.items():
        check(cmd in usage, "`airlock --help` has no line for the command %s" % cmd)
        in_usage = set(OPTION.findall(usage[cmd]))
        check_eq(sorted(in_usage), sorted(table),
                 "options of %s in `airlock --help` (against src/main.c's table)" % cmd)
        check(cmd in docs, "docs/cli.md has no section \"### airlock %s\"" % cmd)
        documented = docs[cmd]
        dups = sorted({o for o in documented if documented.count(o) > 1})
        check(not dups, "docs/cli.md documents %s of %s twice" % (", ".join(dups), cmd))
        missing = sorted(table - set(documented))
        check(not missing, "docs/cli.md does not document %s of airlock %s"
              % (", ".join(missing), cmd))
        stale = sorted(set(documented) - table)
        check(not stale, "docs/cli.md documents %s of airlock %s, which it does not take"
              % (", ".join(stale), cmd))


def _build_dir(env):
    return os.path.dirname(os.path.abspath(env.binary))


def test_man_page_renders_with_its_sections_and_synopsis(env):
    page = os.path.join(_build_dir(env), "docs", "airlock.1")
    if not os.path.isfile(page):
        raise Skip("no %s: pandoc was not found when the build was configured "
                   "(scripts/setup --test installs it)" % page)
    if not shutil.which("man"):
        raise Skip("man is not installed (Debian's man-db)")
    renv = dict(os.environ, MANWIDTH="100", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    r = subprocess.run(["man", "-l", page], capture_output=True, timeout=30, env=renv,
                       stdin=subprocess.DEVNULL)
    err = r.stderr.decode("utf-8", "replace")
    check_eq(r.returncode, 0, "exit code of man -l %s (stderr: %s)" % (page, err))
    check(not err.strip(), "man -l %s warned: %s" % (page, err))
    out = r.stdout.decode("utf-8", "replace")
    check(out.startswith("AIRLOCK(1)"), "the page does not open with AIRLOCK(1): %r" % out[:80])
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "SIGNALS",
                    "ENVIRONMENT", "FILES", "SEE ALSO"):
        check(re.search(r"^%s$" % section, out, re.M), "no %s section in the page" % section)
    # The synopsis is set without filling, so every usage line is there as airlock prints it.
    usage = env.run_cli(["--help"]).stdout.decode()
    for line in usage.splitlines()[1:]:
        check(line.strip() in out, "the page's synopsis lacks %r" % line.strip())
    # whatis(1) and apropos(1) read the NAME line.
    if shutil.which("lexgrog"):
        r = subprocess.run(["lexgrog", page], capture_output=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        check(b'"airlock - ' in r.stdout, "lexgrog finds no NAME line: %r" % r.stdout)


# A markdown link: [text](target), the target without a title.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation other than - and _ dropped,
    spaces made hyphens."""
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def _anchors(path):
    anchors, fenced = set(), False
    for line in _read(path).splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def _user_docs():
    docs = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "deploy", "README.md")]
    ddir = os.path.join(ROOT, "docs")
    docs += sorted(os.path.join(ddir, f) for f in os.listdir(ddir) if f.endswith(".md"))
    return docs


def test_doc_links_stay_inside_the_repository_and_resolve(env):
    root = os.path.realpath(ROOT)
    bad = []
    for doc in _user_docs():
        rel = os.path.relpath(doc, ROOT)
        for target in LINK.findall(_read(doc)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                bad.append("%s: %s leaves the repository" % (rel, target))
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.realpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if os.path.commonpath([root, dest]) != root:
                bad.append("%s: %s leaves the repository" % (rel, target))
            elif not os.path.exists(dest):
                bad.append("%s: %s does not exist" % (rel, target))
            elif anchor and dest.endswith(".md") and anchor not in _anchors(dest):
                bad.append("%s: %s names no heading of %s" % (rel, target,
                                                           os.path.relpath(dest, ROOT)))
    check(not bad, "broken or outside links:\n  " + "\n  ".join(bad))


def test_readme_links_every_page_of_docs(env):
    readme = _read(os.path.join(ROOT, "README.md"))
    linked = set(LINK.findall(readme))
    pages = sorted(f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    missing = [p for p in pages if not any(t.split("#")[0] == "docs/" + p for t in linked)]
    check(not missing, "README.md does not link docs/%s" % ", docs/".join(missing))


def test_meson_install_puts_binary_man_page_and_example_policies(env):
    build = _build_dir(env)
    if not os.path.isdir(os.path.join(build, "meson-info")):
        raise Skip("%s is not a meson build directory" % build)
    if not shutil.which("meson"):
        raise Skip("meson is not installed")
    dest = env.path("destdir")
    r = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", dest],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    check_eq(r.returncode, 0, "exit code of meson install (%s)" % r.stdout.decode()[-2000:])
    installed = set()
    for d, _, files in os.walk(dest):
        installed |= {os.path.relpath(os.path.join(d, f), dest) for f in files}
    # The prefix, and the directories under it, are the build's own (/usr/local by default).
    r = subprocess.run(["meson", "introspect", "--buildoptions", build], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
    base = opts["prefix"].lstrip("/")

    def under(option, *rest):
        return os.path.join(base, opts[option], *rest)

    want = {under("bindir", "airlock"),
            under("datadir", "doc", "airlock", "examples", "default.json"),
            under("datadir", "doc", "airlock", "examples", "example.json")}
    if os.path.isfile(os.path.join(build, "docs", "airlock.1")):
        want.add(under("mandir", "man1", "airlock.1"))
    check_eq(sorted(installed), sorted(want), "files meson install installed")
    check(os.access(os.path.join(dest, under("bindir", "airlock")), os.X_OK),
          "the installed airlock is not executable")
