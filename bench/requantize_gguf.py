#!/usr/bin/env python3
"""Writes a copy of a GGUF model with its 2-D weight matrices re-quantized to another type (Q8_0 or F16), keeping
every metadata key and the 1-D tensors: benchmark inputs of the same shape and weights in other formats.
Uses the `gguf` package (dequantize / quantize).

Usage: python3 bench/requantize_gguf.py IN.gguf OUT.gguf --type q8_0|f16
"""
import argparse

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import dequantize, quantize


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--type", choices=["q8_0", "f16"], required=True)
    args = ap.parse_args()
    qtype = {"q8_0": GGMLQuantizationType.Q8_0, "f16": GGMLQuantizationType.F16}[args.type]
    r = GGUFReader(args.src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(args.dst, arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == GGUFValueType.ARRAY:
            w.add_array(name, field.contents())
        else:
            w.add_key_value(name, field.contents(), vtype)
    for t in r.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)
        if data.ndim == 2:
            if qtype == GGMLQuantizationType.F16:
                w.add_tensor(t.name, data.astype(np.float16))
            else:
                w.add_tensor(t.name, quantize(data, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {args.dst}")


if __name__ == "__main__":
    main()
