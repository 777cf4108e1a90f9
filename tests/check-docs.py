#!/usr/bin/env python3
"""The documentation agrees with the code: the kernel parameters zroam parses
(agent/src/decide/cmdline.rs) are the ones the README's two tables and zroam-boot(7) list,
and the subcommands it dispatches (agent/src/cli/mod.rs) are the ones zroam(8) describes.
Prints what differs; exits 1 when anything does."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KEY = re.compile(r"[a-z][a-z0-9_.]*")


def read(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def parsed_keys():
    """The match arms of the command-line parser: lines that start with a string literal."""
    keys = set()
    for line in read("agent/src/decide/cmdline.rs").splitlines():
        if re.match(r'\s*"[a-z][a-z0-9_.]*"(\s*\|\s*"[a-z][a-z0-9_.]*")*\s*=>', line):
            keys.update(re.findall(r'"([a-z][a-z0-9_.]*)"', line.split("=>")[0]))
    return keys


def table_keys(markdown, heading):
    """Keys named in the first column of the table under `heading`."""
    text = markdown.split(heading, 1)[1]
    keys, started = set(), False
    for line in text.splitlines():
        if line.startswith("|"):
            started = True
            first = line.replace("\\|", "\0").split("|")[1]
            for tok in re.findall(r"`([^`]+)`", first):
                m = KEY.match(tok)
                if m and not tok.isupper():
                    keys.add(m.group(0))
        elif started:
            break
    return keys


def man_terms(scd, section):
    """Bold words that open the definition lines of a man page section (the line's first,
    and those after ", "; not the values after "|")."""
    body = re.split(r"^# ", scd, flags=re.M)
    text = next(b for b in body if b.startswith(section + "\n"))
    terms = set()
    for line in text.splitlines():
        if line.startswith("*"):
            for tok in re.findall(r"(?:^|, )\*([^*]+)\*", line):
                m = KEY.match(tok)
                if m:
                    terms.add(m.group(0))
    return terms


def compare(what, **sets):
    names = list(sets)
    bad = False
    union = set().union(*sets.values())
    for n in names:
        missing = sorted(union - sets[n])
        if missing:
            print(f"check-docs: {what}: {n} lacks {', '.join(missing)}")
            bad = True
    return bad


def main():
    readme = read("README.md")
    src = parsed_keys()
    doc = table_keys(readme, "### Kernel command line") | table_keys(readme, "**Other tools' spellings.**")
    boot7 = read("docs/man/zroam-boot.7.scd")
    man = man_terms(boot7, "KERNEL COMMAND LINE") | man_terms(boot7, "OTHER TOOLS' SPELLINGS")
    bad = compare("kernel parameters", parser=src, readme=doc, man=man)
    subs = set(re.findall(r'^\s*"([a-z]+)" => (?:return )?[a-z]+::(?:run|dispatch)', read("agent/src/cli/mod.rs"), flags=re.M))
    cmds = {t.split()[0] for t in man_terms(read("docs/man/zroam.8.scd"), "COMMANDS")}
    bad |= compare("subcommands", dispatcher=subs, man=cmds)
    if not src or not subs:
        print("check-docs: found no parameters or subcommands in the sources")
        bad = True
    print(f"check-docs: {len(src)} kernel parameters and {len(subs)} subcommands agree" if not bad else "check-docs: FAILED")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
