"""Writes an all-f32 copy of a GGUF file: the same metadata and tokenizer, every tensor
dequantized with gguf-py. llama.cpp then decodes the same model the studio runs in f32 (the
studio dequantizes to f32 at load), so the two read the same bytes per token.

Usage: python gguf_f32.py IN.gguf OUT.gguf
"""

import sys

import gguf
import numpy as np


def main(src: str, dst: str) -> None:
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if key == "general.file_type":
            value = int(gguf.LlamaFileType.ALL_F32)
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
    for tensor in reader.tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        # reader shapes are ggml order (innermost first); numpy wants the reverse
        values = values.reshape([int(d) for d in reversed(tensor.shape)])
        writer.add_tensor(tensor.name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
