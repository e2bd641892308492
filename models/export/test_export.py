#!/usr/bin/env python3
"""Tests of models/export/export.py on a tiny random Qwen3 reward model (needs models/export/requirements-export.txt; CI does not
install torch, so this runs on its own): `python models/export/test_export.py`.

- fp16 with external data (forced, as for a model over 2 GB): OUT holds exactly the files the graph references,
  written once (the old exporter left a second full copy of the weights beside the first);
- a re-export over the same OUT leaves no stale weights file behind;
- --quantize int8: one self-contained model.onnx with integer ops, a quarter of the fp32 weights, same ranking as
  transformers within the int8 tolerance; and a refusal (nothing written) when the tolerance is not met.
"""

import pathlib
import sys
import tempfile
import unittest

import numpy as np
import onnx
import onnxruntime as ort

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "fixtures")]

import export  # noqa: E402
from make_export_fixtures import tiny_model, tokenizer_for  # noqa: E402
from make_fixtures import corpus  # noqa: E402

TOKENIZER_FILES = {"config.json", "tokenizer.json", "tokenizer_config.json"}


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        root = pathlib.Path(cls.tmp.name)
        tokenizer = tokenizer_for("qwen3", corpus(300))
        model = tiny_model("qwen3", tokenizer)
        cls.src = root / "src"
        tokenizer.save_pretrained(str(cls.src))
        model.save_pretrained(str(cls.src))
        cls.root = root

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def out(self, name):
        return self.root / name

    def scores(self, out):
        """Scores of the parity conversations through the exported graph, one at a time."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(out))
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        got = []
        for conversation in export.PARITY_CONVERSATIONS:
            ids = np.array([export.encode(tokenizer, conversation)], dtype=np.int64)
            got.append(float(session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0, 0]))
        return got

    def test_fp16_external_data_is_written_once(self):
        out = self.out("fp16")
        reference = export.export(self.src, out, dtype="fp16", external_data="always")
        self.assertEqual(export.referenced_files(out / "model.onnx"), ["model.onnx.data"])
        self.assertEqual({p.name for p in out.iterdir()}, TOKENIZER_FILES | {"model.onnx", "model.onnx.data"})
        graph = onnx.load(str(out / "model.onnx"), load_external_data=False)
        self.assertEqual(graph.graph.output[0].type.tensor_type.elem_type, onnx.TensorProto.FLOAT)
        np.testing.assert_allclose(self.scores(out), reference, atol=export.TOLERANCE["fp16"])

    def test_reexport_leaves_no_stale_weights(self):
        out = self.out("again")
        export.export(self.src, out, external_data="always")
        self.assertIn("model.onnx.data", {p.name for p in out.iterdir()})
        export.export(self.src, out, external_data="never")
        self.assertEqual({p.name for p in out.iterdir()}, TOKENIZER_FILES | {"model.onnx"})

    def test_int8_is_one_file_with_integer_ops(self):
        fp32, int8 = self.out("fp32"), self.out("int8")
        reference = export.export(self.src, fp32)
        export.export(self.src, int8, quantize="int8")
        self.assertEqual({p.name for p in int8.iterdir()}, TOKENIZER_FILES | {"model.onnx"})
        ops = {n.op_type for n in onnx.load(str(int8 / "model.onnx")).graph.node}
        self.assertIn("DynamicQuantizeLinear", ops)
        self.assertTrue(ops & {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}, ops)
        self.assertLess((int8 / "model.onnx").stat().st_size, (fp32 / "model.onnx").stat().st_size)
        got = self.scores(int8)
        self.assertEqual(np.argsort(got).tolist(), np.argsort(reference).tolist())
        self.assertLessEqual(max(abs(a - b) for a, b in zip(got, reference)), export.int8_tolerance(reference))

    def test_int8_outside_the_tolerance_is_refused(self):
        out = self.out("refused")
        with self.assertRaises(SystemExit) as e:
            export.export(self.src, out, quantize="int8", tolerance=1e-9)
        self.assertIn("int8 parity check failed", str(e.exception))
        self.assertFalse(out.exists())

    def test_int8_needs_fp32(self):
        with self.assertRaises(SystemExit):
            export.export(self.src, self.out("bad"), dtype="fp16", quantize="int8")


if __name__ == "__main__":
    unittest.main(verbosity=2)
