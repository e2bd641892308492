#!/usr/bin/env python3
"""Makes `fixtures/tiny-bert-prefix`: tiny-bert-pair with a second output declared as its prefix output.

    prefix_logits = -logits

so a test can tell which output scored a candidate: partial answers (pruning rounds) rank in the reverse order of
whole ones. config.json declares `bon_prefix_output` and a `bon_prefix_calibration` (scale 1 up to 8 tokens, 0.5
from 8 on: margins logit(P) and 2 logit(P)). Needs the `onnx` package only.
Run: python models/make_prefix_fixture.py
"""

import json
import pathlib
import shutil

import onnx
from onnx import TensorProto, helper

HERE = pathlib.Path(__file__).resolve().parent
SOURCE, OUT = HERE / "fixtures" / "tiny-bert-pair", HERE / "fixtures" / "tiny-bert-prefix"


def main():
    OUT.mkdir(exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(SOURCE / name, OUT / name)
    model = onnx.load(str(SOURCE / "model.onnx"))
    logits = model.graph.output[0]
    model.graph.node.append(helper.make_node("Neg", [logits.name], ["prefix_logits"]))
    model.graph.output.append(helper.make_tensor_value_info("prefix_logits", TensorProto.FLOAT, ["batch", 1]))
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / "model.onnx"))
    config = json.loads((SOURCE / "config.json").read_text())
    config["bon_prefix_output"] = "prefix_logits"
    config["bon_prefix_calibration"] = [{"tokens": 1, "scale": 1.0}, {"tokens": 8, "scale": 0.5}]
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")


if __name__ == "__main__":
    main()
