"""The generated benchmarks: the embedded `synthetic-video` and `synthetic-image` (docs/datasets.md),
and roots of the four paper benchmark ids for dry runs without a download.

A deterministic procedural generator of street scenes seen from a moving camera, with moving
pedestrians, riders and vehicles. It writes miniature datasets in the REAL on-disk layouts and
label encodings, so that the loaders of the real datasets serve them unchanged:

- `synthetic-video`: source = SYNTHIA-Seq (`synthia-seq/SYNTHIA-SEQS-04-DAWN/...`, 16-bit
  3-channel labels, class id in the first RGB channel), target = Cityscapes-Seq
  (`cityscapes/leftImg8bit_sequence`, `gtFine/*_labelIds.png` for the 20th frame of each snippet,
  `leftImg8bit` copies of the annotated frames), plus the EXACT backward flow t -> t-1 of every
  written frame whose previous frame is written, in the flow cache (`udass_flow/`).
- `synthetic-image`: source = GTAV (`gta/images`, palette-PNG `gta/labels` whose index is the
  Cityscapes labelId), target = Cityscapes (`leftImg8bit`, `gtFine`).
- the paper benchmark ids (`synthia-seq2cityscapes-seq`, `viper2cityscapes-seq`,
  `gtav2cityscapes`, `synthia2cityscapes`): the same world model with that benchmark's source
  (SYNTHIA-Seq, VIPER, GTAV, SYNTHIA-RAND-CITYSCAPES) and target layouts; at size `paper`, at the
  datasets' real resolutions.

Internally a pixel's class is its Cityscapes labelId; the writers convert it to each dataset's
encoding. The package, by concern:

    spec.py     benchmarks, sizes, snippets, labelIds
    style.py    palettes, lighting, texture and sensor of each domain; street layouts
    camera.py   the pinhole camera and the ego motion
    world.py    the street model (primitives with velocities)
    render.py   ray casting, labels, exact flow, shading
    writers.py  each dataset's files and label encodings, the flow files (through udass.io)
    jobs.py     what a root holds, rendered job by job (serially or on a process pool)
    roots.py    generate, the marker, the cache of the embedded benchmarks
    stats.py    class statistics and the style figure, read back from the files
"""
from udass.data.synthetic.roots import (EMBEDDED, content_hash, default_root, ensure_synthetic_root,
                                        generate, read_marker)
from udass.data.synthetic.spec import (BENCHMARK_SPECS, DATASET_DIRS, GENERATOR_VERSION, MARKER,
                                       OWNER_STAMP, REAL_RESOLUTIONS, SIZES, SizeSpec, Snippet,
                                       frame_size, role_counts, snippets)
from udass.data.synthetic.stats import format_statistics, layout_statistics, style_figure

__all__ = ["BENCHMARK_SPECS", "DATASET_DIRS", "EMBEDDED", "GENERATOR_VERSION", "MARKER",
           "OWNER_STAMP", "REAL_RESOLUTIONS", "SIZES", "SizeSpec", "Snippet", "content_hash",
           "default_root", "ensure_synthetic_root", "format_statistics", "frame_size", "generate",
           "layout_statistics", "read_marker", "role_counts", "snippets", "style_figure"]
