"""``demoai model``: import (stat-cached, no bytes stored twice), list/show with header facts,
lineage and evals, aliases as refs with their history, rm, export loaded by upstream tools
(llama-cpp-python, peft) and merge."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from demoai.cli import main
from demoai.porcelain import init
from demoai.porcelain import model as M
from demoai.registry.defaults import default_gguf_path


@pytest.fixture()
def repo(tmp_path):
    r = init(tmp_path / "r")
    yield r
    r.close()


def test_import_gguf_twice_reads_nothing_and_lists(repo):
    g = default_gguf_path()
    first = M.import_model(repo, g, dest="models/smol.gguf")
    assert first.commit and first.bytes_read == g.stat().st_size and first.new_bytes > 0
    again = M.import_model(repo, g, dest="models/smol.gguf")
    assert again.commit is None and again.bytes_read == 0 and again.new_bytes == 0
    other = M.import_model(repo, g, dest="models/copy.gguf")
    assert other.commit and other.new_bytes == 0 and other.digest == first.digest
    rows = {r.path: r for r in M.list_models(repo)}
    e = rows["models/smol.gguf"]
    assert (e.kind, e.format, e.quantization, e.architecture) == ("model", "gguf", "Q4_1", "llama")
    import gguf
    assert e.parameters == sum(int(t.n_elements) for t in gguf.GGUFReader(str(g)).tensors)
    info = M.show_model(repo, "smol")
    assert info.meta["config"]["block_count"] == 30 and info.meta["chat_template_digest"].startswith("blake3:")
    assert info.lineage["commit"] == first.commit


def test_aliases_are_refs_with_history_and_rm(repo):
    g = default_gguf_path()
    M.import_model(repo, g, dest="models/a.gguf")
    M.import_model(repo, g, dest="models/b.gguf")
    M.set_alias(repo, "models/a.gguf", "champion")
    M.set_alias(repo, "b", "champion")
    assert repo.ref_value("refs/aliases/champion")
    hist = M.alias_history(repo, "champion")
    assert [h.path for h in hist] == ["models/b.gguf", "models/a.gguf"]
    assert M.show_model(repo, "champion").entry.path == "models/b.gguf"
    rows = {r.path: r for r in M.list_models(repo)}
    assert rows["models/b.gguf"].aliases == ["champion"] and rows["models/a.gguf"].aliases == []
    cid = M.remove_model(repo, "models/a.gguf")
    assert "models/a.gguf" not in repo.tree_entries(cid)
    with pytest.raises(Exception):
        M.set_alias(repo, "models/b.gguf", "bad name!")


def test_export_gguf_loads_in_llama_cpp(repo, tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    M.import_model(repo, default_gguf_path(), dest="models/smol.gguf")
    out = M.export_model(repo, "smol", tmp_path / "out.gguf")
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_threads=1, verbose=False)
    assert llm.n_vocab() == 49152
    llm.close()


def test_adapter_import_export_peft_and_merge(repo, tmp_path):
    pytest.importorskip("peft")
    import peft
    import torch
    import transformers
    from tests.helpers.tiny import tiny_llama_with_lora
    base, adapter = tiny_llama_with_lora(tmp_path / "base", tmp_path / "ad", ["hello world"] * 8,
                                         vocab_size=300, lora_alpha=8)
    b = M.import_model(repo, base, dest="models/tiny")
    a = M.import_model(repo, adapter, dest="adapters/tiny-lora")
    assert (b.kind, a.kind) == ("model", "adapter")
    rows = {r.path: r for r in M.list_models(repo)}
    assert rows["adapters/tiny-lora"].format == "peft" and rows["models/tiny"].parameters > 0
    out = M.export_model(repo, "adapters/tiny-lora", tmp_path / "exported")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base))
    pm = peft.PeftModel.from_pretrained(model, str(out))
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        want = pm(ids).logits
        merged = M.merge_model(repo, "models/tiny+adapters/tiny-lora", "models/tiny-merged")
        assert merged.commit and merged.kind == "model"
        lin = repo.lineage(merged.commit)
        assert lin["inputs"]["adapter"] == a.digest and lin["inputs"]["base"] == b.digest
        mm = transformers.AutoModelForCausalLM.from_pretrained(str(repo.workpath("models/tiny-merged")))
        assert torch.allclose(mm(ids).logits, want, atol=1e-4)


def test_cli_list_show_json(repo, monkeypatch):
    M.import_model(repo, default_gguf_path(), dest="models/smol.gguf")
    monkeypatch.chdir(repo.root)
    r = CliRunner().invoke(main, ["model", "list", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["path"] == "models/smol.gguf"
    r = CliRunner().invoke(main, ["model", "show", "nope", "--json"])
    assert r.exit_code == 1


def test_show_lists_what_uses_the_model(repo, tmp_path, monkeypatch):
    from demoai.objects import EvalResult
    from demoai.porcelain import add, commit
    from demoai.porcelain.evaluate import commit_record
    from tests.helpers.tiny import agent_yaml
    model = M.import_model(repo, default_gguf_path(), dest="models/smol.gguf")
    M.set_alias(repo, "models/smol.gguf", "champion")
    files = {"agents/by-path.agent.yaml": agent_yaml().replace("model: smollm2", "model: models/smol.gguf"),
             "agents/builtin.agent.yaml": agent_yaml(),       # smollm2: the same bytes, embedded
             "agents/other.agent.yaml": agent_yaml().replace("model: smollm2", "model: models/other.gguf")}
    for rel, text in files.items():
        (repo.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo.root / rel).write_text(text)
    ad = tmp_path / "lora"
    ad.mkdir()
    (ad / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "base_model_name_or_path": "champion"}))
    (ad / "adapter_model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    add(repo, [repo.root / "agents"])
    commit(repo, "agents")
    adapter = M.import_model(repo, ad, dest="adapters/lora")
    res = EvalResult.create(suite="blake3:" + "1" * 64, suite_name="arith", suite_path="", task="generate",
                            model=model.digest, model_ref="models/smol.gguf", adapter=None, dataset=None,
                            scores={"exact_match": {"value": 0.25}}, counts={}, pins={}, perf={},
                            predictions=None)
    commit_record(repo, res, "evals/arith/smol.eval.json", "eval", inputs={}, parameters={})

    used = M.show_model(repo, "smol").used_by
    assert [a["path"] for a in used["agents"]] == ["agents/builtin.agent.yaml", "agents/by-path.agent.yaml"]
    assert [(a["alias"], a["current"]) for a in used["aliases"]] == [("champion", True)]
    assert [a["path"] for a in used["adapters"]] == ["adapters/lora"]
    assert [e["path"] for e in used["evaluations"]] == ["evals/arith/smol.eval.json"]
    assert used["deployments"] == []
    assert M.show_model(repo, "adapters/lora").used_by["adapters"] == []

    monkeypatch.chdir(repo.root)
    r = CliRunner().invoke(main, ["model", "show", "champion"])
    assert r.exit_code == 0, r.output
    assert "used by:" in r.output and "agents/by-path.agent.yaml" in r.output and "no deployments" in r.output
    assert "adapters/lora" in r.output and "evals/arith/smol.eval.json" in r.output
    r = CliRunner().invoke(main, ["model", "show", "lora", "--json"])
    assert json.loads(r.output)["used_by"]["deployments"] == []
    r = CliRunner().invoke(main, ["model", "show", "lora"])
    assert "no deployments" in r.output and adapter.digest[:19] in r.output


def test_used_by_is_extensible():
    from demoai.train import usage as R
    assert R.USED_BY_SECTIONS[-1] == "deployments"
    before = dict(R._COLLECTORS)
    try:
        R.register_used_by("deployments")(lambda ctx: [{"path": f"deploy/{ctx.path}"}])
        R.register_used_by("dashboards")(lambda ctx: [])
        from demoai.objects import Model
        art = Model(digest="blake3:" + "0" * 64, format="safetensors", files={})
        got = R.used_by(None, "models/m.gguf", art, "c", arts={}, aliases={})
        assert got["deployments"] == [{"path": "deploy/models/m.gguf"}] and list(got)[-1] == "dashboards"
    finally:
        R._COLLECTORS.clear()
        R._COLLECTORS.update(before)


SCAN_CONFIG = """\
name: s
base: models/tiny
dataset: data/arith.jsonl
format: template
template: "Question: what is {{a}} plus {{b}}?"
columns: {completion: answer}
lora: {r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}
learning_rate: 0.02
max_steps: 4
batch_size: 4
max_length: 64
seed: 0
save_every: 4
"""


def test_train_plot_scans_writes_a_png_and_refuses_a_run_without_scans(tmp_path, monkeypatch):
    pytest.importorskip("peft")
    from demoai.errors import PathNotFound
    from demoai.porcelain import commit
    from demoai.porcelain import train as T
    from demoai.train.plot import last_scan_grid, layer_series, scan_rows
    from tests.helpers.tiny import tiny_llama_with_lora
    pairs = [(a, b) for a in range(4) for b in range(4)]
    r = init(tmp_path / "r")
    tiny_llama_with_lora(r.root / "models/tiny", tmp_path / "ad", [f"what is {a} plus {b}? {a + b}" for a, b in pairs],
                         vocab_size=200, lora_alpha=8)
    (r.root / "data").mkdir()
    (r.root / "data/arith.jsonl").write_text("".join(
        json.dumps({"id": i, "a": a, "b": b, "answer": str(a + b)}) + "\n" for i, (a, b) in enumerate(pairs)))
    (r.root / "scan.train.yaml").write_text(SCAN_CONFIG + "scan_every: 2\n")
    (r.root / "plain.train.yaml").write_text(SCAN_CONFIG.replace("max_steps: 4", "max_steps: 1"))
    commit(r, "tiny", paths=[r.root / p for p in ("models/tiny", "data/arith.jsonl", "scan.train.yaml",
                                                  "plain.train.yaml")])
    T.train_lora(r, "scan.train.yaml", name="scanned")
    T.train_lora(r, "plain.train.yaml", name="plain")

    rows = scan_rows(r, "scanned")
    steps, norms = layer_series(rows)
    assert steps == [0, 2, 4] and sorted(norms) == [0, 1]
    _, grads = layer_series(rows, "grad_norm")
    assert grads[0][0] is None and all(g > 0 for g in grads[0][1:])     # no gradient before step 1
    # a layer's norm is that of all its LoRA matrices together
    want = sum(x["norm"] ** 2 for x in rows if x["step"] == 4 and x["layer"] == 1) ** 0.5
    assert norms[1][-1] == pytest.approx(want) and norms[1][-1] > norms[1][0]
    last, layers, modules, grid = last_scan_grid(rows)
    assert (last, layers, modules) == (4, [0, 1], ["self_attn.q_proj", "self_attn.v_proj"])
    cell = sum(x["norm"] ** 2 for x in rows if x["step"] == 4 and x["module"] == "layers.0.self_attn.v_proj") ** 0.5
    assert grid[0][1] == pytest.approx(cell)

    monkeypatch.chdir(r.root)
    res = CliRunner().invoke(main, ["train", "plot", "scanned", "--scans", "-o", "s.png", "--json"])
    assert res.exit_code == 0, res.output
    png = (r.root / "s.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    import matplotlib.image
    img = matplotlib.image.imread(str(r.root / "s.png"))
    assert img.shape[1] == 1300 and img.shape[0] == 600            # two line panels and the heatmap
    res = CliRunner().invoke(main, ["train", "plot", "plain", "--scans", "--json"])
    assert res.exit_code == 1 and not (r.root / "scans.png").exists()
    err = json.loads(res.stderr.strip().splitlines()[-1])["error"]
    assert err["code"] == "path_not_found" and "scan_every" in err["message"]
    with pytest.raises(PathNotFound):
        T.plot_scans(r, "plain", tmp_path / "x.png")
    res = CliRunner().invoke(main, ["train", "plot", "scanned", "plain", "--scans"])
    assert res.exit_code == 2
    r.close()


def test_import_links_immutable_sources_and_status_stays_clean(repo, tmp_path):
    import os
    import shutil
    from demoai.porcelain import restore, status
    g = default_gguf_path()                       # a file of an installed package: never rewritten
    same_fs = os.stat(g).st_dev == os.stat(repo.root).st_dev
    first = M.import_model(repo, g, dest="models/a.gguf")
    assert first.placed == ("hardlink" if same_fs else "copy") or first.placed == "reflink"
    other = M.import_model(repo, g, dest="models/b.gguf")
    assert other.commit and other.new_bytes == 0 and other.placed == first.placed
    copied = M.import_model(repo, g, dest="models/c.gguf", link="copy")
    assert copied.placed == "copy" and os.stat(repo.workpath("models/c.gguf")).st_ino != os.stat(g).st_ino
    st = status(repo)
    assert (st["staged"], st["unstaged"], st["untracked"]) == ([], [], [])

    # A loose file of the user's is copied unless a hard link is asked for; a hard-linked
    # source edited in place later shows as a modified file, never as damage to the store.
    own = tmp_path / "own.gguf"
    shutil.copyfile(g, own)
    assert M.import_model(repo, own, dest="models/own.gguf").placed in ("copy", "reflink")
    if not same_fs:
        return
    linked = M.import_model(repo, own, dest="models/linked.gguf", link="hardlink")
    assert linked.placed == "hardlink" and os.stat(repo.workpath("models/linked.gguf")).st_ino == os.stat(own).st_ino
    with open(own, "r+b") as f:
        f.seek(1000)
        f.write(b"edited in place")
    st = status(repo)
    assert st["unstaged"] == [{"path": "models/linked.gguf", "change": "modified"}]
    from demoai.porcelain import fsck
    assert fsck(repo)["ok"]
    restore(repo, [repo.workpath("models/linked.gguf")])
    assert repo.workpath("models/linked.gguf").read_bytes() == g.read_bytes()
    assert os.stat(repo.workpath("models/linked.gguf")).st_ino != os.stat(own).st_ino
    assert status(repo)["unstaged"] == []
    with pytest.raises(Exception):
        M.import_model(repo, own, dest="models/x.gguf", link="symlink")
