"""The documentation stays true to the binary.

  - every ```json block in README.md and docs/*.md is a whole config that
    `moat validate` accepts (file paths in it are made in a temp dir first);
    a block preceded by `<!-- fragment -->` is only part of one: it must still
    be a JSON object, or the members of one;
  - docs/configuration.md documents exactly the keys the validator knows: the
    validator's key tree is found by probing (an unknown key inside an object
    makes it list the keys it knows there);
  - every `moat ...` command in a sh/console block (or an inline code span)
    uses a real subcommand and only options its help text shows;
  - every relative link points to a file that exists, and its #anchor to a
    heading in it.
"""

import copy
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import MOAT_BIN, PKI

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FRAGMENT_MARK = "<!-- fragment -->"
PROBE = "zz_doc_probe"


def rel(path):
    return str(Path(path).relative_to(ROOT))


def moat(*args, timeout=30):
    return subprocess.run([MOAT_BIN, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------
# markdown


class Block:
    def __init__(self, path, line, lang, text, fragment):
        self.path, self.line, self.lang, self.text, self.fragment = (
            path, line, lang, text, fragment)

    def __repr__(self):
        return "%s:%d" % (rel(self.path), self.line)


def code_blocks(path):
    """Fenced blocks of a markdown file: (line of the fence, info string, text, whether
    the line before the fence marks it as a fragment)."""
    blocks = []
    lines = Path(path).read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        fragment = start > 0 and lines[start - 1].strip() == FRAGMENT_MARK
        blocks.append(Block(path, start + 1, lang, "\n".join(body), fragment))
        i += 1
    return blocks


def prose_lines(path):
    """(line number, text) of the lines outside fenced blocks."""
    out = []
    fence = None
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        m = re.match(r"^\s*(```+|~~~+)", line)
        if fence is None and m:
            fence = m.group(1)
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        out.append((n, line))
    return out


def all_blocks():
    return [b for p in DOC_FILES for b in code_blocks(p)]


# ---------------------------------------------------------------------------
# 1. JSON examples


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("docs-pki"))


def json_blocks():
    return [b for b in all_blocks() if b.lang == "json"]


def local_path(tmp, p):
    """Where a path written in an example lives in the test's temp dir: absolute paths
    are re-rooted under it, relative ones stay relative to the config file."""
    q = Path(p)
    return tmp / "root" / str(q).lstrip("/") if q.is_absolute() else tmp / q


def localize(cfg, tmp, pki):
    """Points every file and directory an example names into tmp, creating the files:
    certificates and keys as real ones from the test CA covering the site's names."""
    for i, site in enumerate(cfg.get("sites") or []):
        c = site.get("certificate") if isinstance(site, dict) else None
        if not isinstance(c, dict) or not isinstance(c.get("cert"), str) \
                or not isinstance(c.get("key"), str):
            continue
        names = [h for h in site.get("hosts") or [] if isinstance(h, str) and h != "*"]
        leaf = pki.leaf(names[0] if names else "example.com", names or None)
        for field, src in (("cert", leaf.chain), ("key", leaf.key)):
            dst = local_path(tmp, c[field])
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(src).read_bytes())
            c[field] = str(dst)
    acme = cfg.get("acme")
    if isinstance(acme, dict):
        if isinstance(acme.get("ca_root"), str):
            dst = local_path(tmp, acme["ca_root"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(pki.ca.read_bytes())
            acme["ca_root"] = str(dst)
        if isinstance(acme.get("storage"), str):
            acme["storage"] = str(local_path(tmp, acme["storage"]))
    log = cfg.get("log")
    if isinstance(log, dict) and isinstance(log.get("file"), str):
        dst = local_path(tmp, log["file"])
        dst.parent.mkdir(parents=True, exist_ok=True)
        log["file"] = str(dst)
    return cfg


def fragment_object(text):
    """A fragment is a JSON object, or the members of one ("key": value, ...)."""
    for candidate in (text, "{" + text + "}"):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


@pytest.fixture(scope="module")
def top_keys(tmp_path_factory):
    keys = known_keys(tmp_path_factory.mktemp("docs-top"), [], None)
    assert keys, "moat validate did not name the known top-level keys for an unknown one"
    return keys


def validate(cfg, tmp, pki):
    cfg = localize(copy.deepcopy(cfg), tmp, pki)
    f = tmp / "moat.json"
    f.write_text(json.dumps(cfg, indent=2))
    r = moat("validate", "-c", f)
    return r, f


@pytest.mark.parametrize("block", json_blocks(), ids=repr)
def test_json_example_validates(block, tmp_path, pki, top_keys):
    if block.fragment:
        obj = fragment_object(block.text)
        assert obj is not None, (
            "%r is marked %s but is neither a JSON object nor the members of one"
            % (block, FRAGMENT_MARK))
        if obj and "sites" not in obj and set(obj) <= set(top_keys):
            # Top-level sections ("acme": {...}): they must validate beside a plain site.
            r, f = validate(dict(copy.deepcopy(BASE), **obj), tmp_path, pki)
            assert r.returncode == 0, (
                "%r: moat validate refused this fragment beside a minimal site:\n%s%s\n"
                "as validated:\n%s" % (block, r.stdout, r.stderr, f.read_text()))
        return
    try:
        cfg = json.loads(block.text)
        why = None
    except ValueError as e:
        cfg, why = None, str(e)
    assert why is None, (
        "%r is not valid JSON (%s); a block that is only part of a config needs %s on "
        "the line before its fence" % (block, why, FRAGMENT_MARK))
    assert isinstance(cfg, dict), "%r: a config is a JSON object" % block
    r, f = validate(cfg, tmp_path, pki)
    assert r.returncode == 0, (
        "%r: moat validate refused the example (mark a deliberate partial config with "
        "%s):\n%s%s\nas validated:\n%s"
        % (block, FRAGMENT_MARK, r.stdout, r.stderr, f.read_text()))


def test_there_are_json_examples():
    assert len(json_blocks()) >= 3


# ---------------------------------------------------------------------------
# 2. the configuration reference against the validator's key tree


BASE = {"sites": [{"hosts": ["example.com"], "upstreams": ["127.0.0.1:8080"],
                   "routes": [{"path": "/api/", "upstreams": ["127.0.0.1:9000"]}]}]}


def show_path(tokens):
    out = ""
    for t in tokens:
        out += "[%d]" % t if isinstance(t, int) else ("." if out else "") + t
    return out


def norm_path(tokens):
    """The path with every array index written "[]": sites[].routes[].path."""
    return re.sub(r"\[\d+\]", "[]", show_path(tokens))


def put(cfg, tokens, value):
    """Sets cfg at tokens to value, making the objects and arrays on the way."""
    cur = cfg
    for t, nxt in zip(tokens, tokens[1:]):
        if isinstance(t, int):
            while len(cur) <= t:
                cur.append({} if not isinstance(nxt, int) else [])
            cur = cur[t]
        else:
            if not isinstance(cur.get(t), (dict, list)):
                cur[t] = [] if isinstance(nxt, int) else {}
            cur = cur[t]
    last = tokens[-1]
    if isinstance(last, int):
        while len(cur) <= last:
            cur.append({})
    cur[last] = value


def known_keys(tmp, tokens, value):
    """Puts value at tokens in the base config and returns the keys the validator says
    it knows in the object at tokens (+ [0] when value is an array), or None."""
    cfg = copy.deepcopy(BASE)
    if tokens:
        put(cfg, tokens, value)
    else:
        cfg[PROBE] = 1  # the top level itself
    f = tmp / "probe.json"
    f.write_text(json.dumps(cfg))
    r = moat("validate", "-c", f)
    where = show_path(tokens + ([0] if isinstance(value, list) else []))
    prefix = re.escape(where + "." if where else "")
    m = re.search(r"(?m)^%s%s: unknown key \(known keys: ([^)]*)\)$" % (prefix, PROBE),
                  r.stdout + r.stderr)
    if m is None:
        return None
    return [k.strip() for k in m.group(1).split(",") if k.strip()]


def validator_tree(tmp):
    """Every key path the validator knows: (leaves, objects). Arrays of objects are
    written "sites[]"; their elements' keys "sites[].hosts"."""
    leaves, objects = set(), set()
    top = known_keys(tmp, [], None)
    assert top, "moat validate did not name the known top-level keys for an unknown one"
    todo = [([], top)]
    while todo:
        tokens, keys = todo.pop()
        for k in keys:
            here = tokens + [k]
            sub = known_keys(tmp, here, {PROBE: 1})
            if sub is not None:
                objects.add(norm_path(here))
                todo.append((here, sub))
                continue
            sub = known_keys(tmp, here, [{PROBE: 1}])
            if sub is not None:
                objects.add(norm_path(here))
                objects.add(norm_path(here) + "[]")
                todo.append((here + [0], sub))
                continue
            leaves.add(norm_path(here))
    return leaves, objects


def documented_keys():
    """(line, candidate paths) for every key in the first column of
    docs/configuration.md's tables; a heading's first code span (`acme`, `sites[]`)
    is the prefix of the keys in the tables under it."""
    out = []
    prefixes = [""]
    for n, line in prose_lines(ROOT / "docs" / "configuration.md"):
        h = re.match(r"^#{1,6}\s+(.*)$", line)
        if h:
            spans = re.findall(r"`([^`]+)`", h.group(1))
            prefixes = [s for s in spans if re.fullmatch(r"[a-z_][a-z0-9_\[\].]*", s)] or [""]
            continue
        if not line.lstrip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells or re.fullmatch(r":?-+:?", cells[0]):
            continue
        for key in re.findall(r"`([^`]+)`", cells[0]):
            if not re.fullmatch(r"[a-z_][a-z0-9_\[\].]*", key):
                continue
            cands = [(p + "." + key if p else key) for p in prefixes]
            if "." in key and key not in cands:
                cands.append(key)
            out.append((n, key, cands))
    return out


def matches(candidate, path):
    """A documented candidate names a validator path: the same path, or, for a dotted
    candidate (`health_check.path` under a heading that covers several places), the
    end of it."""
    return path == candidate or ("." in candidate and path.endswith("." + candidate))


def test_configuration_reference_matches_validator(tmp_path):
    leaves, objects = validator_tree(tmp_path)
    everything = leaves | objects
    docs = documented_keys()
    assert docs, "no keys found in the tables of docs/configuration.md"

    unknown = []
    covered = set()
    for n, key, cands in docs:
        hits = {p for c in cands for p in everything if matches(c, p)}
        if not hits:
            unknown.append("docs/configuration.md:%d: `%s` (read as %s)"
                           % (n, key, " or ".join(cands)))
        covered |= hits
    undocumented = sorted(leaves - covered)
    msg = []
    if undocumented:
        msg.append("keys moat validate knows that no table in docs/configuration.md "
                   "documents:\n  " + "\n  ".join(undocumented))
    if unknown:
        msg.append("keys docs/configuration.md documents that moat validate does not "
                   "know:\n  " + "\n  ".join(unknown))
    assert not msg, "\n".join(msg)


# ---------------------------------------------------------------------------
# 3. commands


def help_texts():
    """{subcommand: (words that must follow `moat`, options its help shows)}."""
    top = moat("--help")
    assert top.returncode == 0, top.stderr
    usage = {}
    for line in top.stdout.splitlines():
        m = re.match(r"^\s*(?:usage:)?\s*moat\s+(\S.*)$", line)
        if not m:
            continue
        words = []
        for tok in m.group(1).split():
            if not re.fullmatch(r"[a-z][a-z0-9-]*", tok):
                break
            words.append(tok)
        if words:
            usage[words[0]] = (words, set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)",
                                                     m.group(1))))
    assert "proxy" in usage and "run" in usage, top.stdout
    proxy = moat("proxy", "--help")
    assert proxy.returncode == 0, proxy.stderr
    usage["proxy"] = (["proxy"], set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)",
                                                proxy.stdout)))
    return usage


IMAGE_RE = re.compile(r"^(?:[\w.-]+/)*moat(?::[\w.-]+)?$")
FLAG_ONLY = {"-d", "--rm", "-i", "-t", "-it", "-ti", "--read-only", "--init", "--detach",
             "--interactive", "--tty", "--privileged"}


def moat_invocations(command):
    """The argument lists given to moat in one shell command line."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        tokens = command.split()
    found = []
    segment = []
    for tok in tokens + [";"]:
        if tok in ("|", "||", "&&", ";", "&"):
            if segment:
                found.extend(do_segment(segment))
            segment = []
        else:
            segment.append(tok)
    return found


def do_segment(seg):
    while seg and (re.fullmatch(r"\w+=.*", seg[0]) or seg[0] in ("sudo", "exec", "$", "#")):
        seg = seg[1:]
    if not seg:
        return []
    if seg[0] == "moat" or seg[0].endswith("/moat"):
        return [seg[1:]]
    # docker/podman run [options] IMAGE [args]: the image's entrypoint is moat;
    # docker/podman exec [options] CONTAINER moat [args]
    for i, tok in enumerate(seg[:-1]):
        if tok in ("docker", "podman") and seg[i + 1] in ("run", "exec"):
            j = i + 2
            while j < len(seg) and seg[j].startswith("-"):
                j += 1 if (seg[j] in FLAG_ONLY or "=" in seg[j]) else 2
            if seg[i + 1] == "exec":
                rest = seg[j + 1:]
                return do_segment(rest) if rest else []
            if j < len(seg) and IMAGE_RE.match(seg[j]):
                return [seg[j + 1:]]
            return []
    return []


def shell_commands(block):
    """The command lines of a sh or console block, continuation lines joined; in a
    console block only the lines after a `$ ` or `# ` prompt."""
    cmds = []
    cur = ""
    for line in block.text.splitlines():
        if block.lang == "console" and not cur:
            m = re.match(r"^\s*[$#]\s+(.*)$", line)
            if not m:
                continue
            line = m.group(1)
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cmds.append(cur + line)
        cur = ""
    if cur:
        cmds.append(cur)
    return cmds


def commands_in_docs():
    out = []
    for b in all_blocks():
        if b.lang in ("sh", "shell", "bash", "console"):
            for c in shell_commands(b):
                for args in moat_invocations(c):
                    out.append(("%r" % b, c.strip(), args))
    for p in DOC_FILES:
        for n, line in prose_lines(p):
            for span in re.findall(r"`(moat [^`]+)`", line):
                span = re.sub(r"[\[\]]", " ", span).replace("|", " ")
                out.append(("%s:%d" % (rel(p), n), span, span.split()[1:]))
    return out


def check_invocation(args, usage):
    """What is wrong with one argument list, or None."""
    if not args:
        return None  # `moat` alone: named, not run
    sub = args[0]
    if sub in ("--help", "-h", "help", "--version"):
        return None
    if sub not in usage:
        return "no subcommand %r (moat --help shows %s)" % (sub, ", ".join(sorted(usage)))
    words, options = usage[sub]
    if args[:len(words)] != words and len(args) >= len(words):
        return "%r must be followed by %r" % (sub, " ".join(words[1:]))
    bad = []
    for a in args[len(words):]:
        if not a.startswith("-") or a == "-":
            continue
        opt = a.split("=", 1)[0]
        if opt not in options and opt != "--help":
            bad.append(opt)
    if bad:
        return "options not in the help of `moat %s`: %s" % (sub, ", ".join(bad))
    return None


def test_commands_use_real_options():
    usage = help_texts()
    cmds = commands_in_docs()
    assert any(c[2] and c[2][0] == "proxy" for c in cmds), "no `moat proxy` example found"
    wrong = []
    for where, text, args in cmds:
        why = check_invocation(args, usage)
        if why is not None:
            wrong.append("%s: %s\n    %s" % (where, why, text))
    assert not wrong, "commands that moat would not take:\n" + "\n".join(wrong)


def test_command_finder_sees_through_prompts_and_images():
    assert moat_invocations("sudo moat validate -c /etc/moat/moat.json") == [
        ["validate", "-c", "/etc/moat/moat.json"]]
    assert moat_invocations('docker run --rm -v "$PWD/m.json:/etc/moat/moat.json:ro" moat '
                            "validate -c /etc/moat/moat.json") == [
        ["validate", "-c", "/etc/moat/moat.json"]]
    assert moat_invocations("docker run -d --name moat -p 80:80 moat") == [[]]
    assert moat_invocations("systemctl reload moat && journalctl -u moat -f") == []
    assert moat_invocations("docker exec moat moat validate -c /etc/moat/moat.json") == [
        ["validate", "-c", "/etc/moat/moat.json"]]
    usage = help_texts()
    assert check_invocation(["proxy", "--from", "a", "--nope"], usage) is not None
    assert check_invocation(["prox"], usage) is not None
    assert check_invocation(["certs", "lst"], usage) is not None
    assert check_invocation(["certs", "list", "--storage", "/x"], usage) is None


# ---------------------------------------------------------------------------
# 4. links


def slug(heading):
    """GitHub's anchor for a heading."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    seen = {}
    out = set()
    for _, line in prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else "%s-%d" % (s, n))
    return out


def links(path):
    for n, line in prose_lines(path):
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", line):
            yield n, target


def test_relative_links_resolve():
    broken = []
    count = 0
    for p in DOC_FILES:
        for n, target in links(p):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            count += 1
            file_part, _, anchor = target.partition("#")
            dest = (p.parent / file_part).resolve() if file_part else p
            where = "%s:%d: %s" % (rel(p), n, target)
            if not dest.exists():
                broken.append(where + " (no such file)")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(where + " (no heading with that anchor)")
    assert count > 0
    assert not broken, "broken links:\n" + "\n".join(broken)
