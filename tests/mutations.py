"""Plant each rule-break of the method in a copy of the code and check that the tests catch it.

    python tests/mutations.py [--only NAME ...] [--list] [--keep]

Every entry of MUTATIONS names a rule (docs/method.md, "Rules and the tests that guard them"),
the file it breaks and the exact text replaced. For each one, the tracked files of the
repository are copied to a temporary folder, the break is planted there, and the fast rule
tests (TESTS) run on that copy; the break is caught when they fail. The report lists each
mutation with "caught" or "SURVIVED" and the exit status is 1 if any survived.
`tests/test_mutations.py` checks in the default suite that every planted text still occurs
exactly once in the code (so the list cannot rot silently) and runs the whole list as a slow test.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = ("tests/test_step_image_recipe.py", "tests/test_step_rules.py",
         "tests/test_method_losses_teacher.py", "tests/test_method_templates_quadmix.py",
         "tests/test_method_feature_mix_aggregation.py")


@dataclass(frozen=True)
class Mutation:
    """A rule-break: in `path`, each `old` text (occurring exactly once) becomes its `new`."""

    name: str
    rule: str
    path: str
    edits: tuple[tuple[str, str], ...]


STEP, LOOP, AGG = "udass/train/step.py", "udass/train/loop.py", "udass/method/aggregation.py"
HRDA = "udass/models/hrda.py"

MUTATIONS: tuple[Mutation, ...] = (
    Mutation("pseudo_labels_from_the_student", "pseudo-labels come from the EMA teacher", STEP,
             (("pseudo = teacher_pseudo_labels(nets.teacher, target, env)",
               "pseudo = teacher_pseudo_labels(nets.student, target, env)"),)),
    Mutation("teacher_updated_before_use", "the teacher is used before its EMA update", LOOP,
             (("        self.student.train()\n        self.optimizer.zero_grad(set_to_none=True)",
               "        self.teacher.update(self.learner.net, k, self.cfg.teacher.ema)\n"
               "        self.student.train()\n        self.optimizer.zero_grad(set_to_none=True)"),
              ("        self.teacher.update(self.learner.net, k, self.cfg.teacher.ema)\n        if self.method",
               "        if self.method"))),
    Mutation("ema_momentum_of_the_next_step", "EMA alpha_k = min(1 - 1/(k+1), ema) at step k", LOOP,
             (("self.teacher.update(self.learner.net, k, self.cfg.teacher.ema)",
               "self.teacher.update(self.learner.net, k + 1, self.cfg.teacher.ema)"),)),
    Mutation("pseudo_labels_not_propagated", "pseudo-labels average the flow-warped t-1 prediction",
             STEP, (("propagate=t.flow_propagation)", "propagate=False)"),)),
    Mutation("pseudo_threshold_ignored", "DACS weights use the 0.968 confidence threshold", STEP,
             (("threshold=t.pseudo_threshold,", "threshold=0.5,"),)),
    Mutation("no_histogram_matching", "source clips are histogram-matched to the target frame t",
             STEP, (("    if env.cfg.data.hist_match:\n", "    if False:\n"),)),
    Mutation("histogram_matched_to_frame_t_minus_1", "the reference is the target clip's frame t",
             "udass/data/transforms.py",
             (("match_histograms(source.frames, target.frames[:, 0])",
               "match_histograms(source.frames, target.frames[:, 1])"),)),
    Mutation("target_not_strongly_augmented", "the target input of L_trg is strongly augmented",
             STEP, (("out = nets.student(*cat_clips([S, T_strong]), **detail_draws(env))",
                     "out = nets.student(*cat_clips([S, T]), **detail_draws(env))"),)),
    Mutation("source_strongly_augmented", "the source input of L_src is not augmented", STEP,
             (("out = nets.student(*cat_clips([S, T_strong]), **detail_draws(env))",
               "out = nets.student(*cat_clips([strong(S, cfg, g), T_strong]), **detail_draws(env))"),)),
    Mutation("mixed_not_strongly_augmented", "every mixed sample is strongly augmented", STEP,
             (("samples = [strong(mixed[k], cfg, g) for k in keys]",
               "samples = [mixed[k] for k in keys]"),)),
    Mutation("templates_stored_strongly_augmented", "the target template is the un-augmented clip",
             STEP, (("return StepOutput(terms, next_templates(S, T, pseudo, env), record)",
                     "return StepOutput(terms, next_templates(S, T_strong, pseudo, env), record)"),)),
    Mutation("target_classes_overlap_source_classes", "C_t excludes the classes of C_s", STEP,
             (("c_t = choose_classes(T.labels[:, 0], c, env.generator, exclude=c_s)",
               "c_t = choose_classes(T.labels[:, 0], c, env.generator)"),)),
    Mutation("long_tail_ignored", "the long-tail classes are always in C_s", STEP,
             (("c_s = choose_classes(S.labels[:, 0], c, env.generator, long_tail=env.long_tail)",
               "c_s = choose_classes(S.labels[:, 0], c, env.generator)"),)),
    Mutation("template_confidence_ignored", "target template pixels need confidence >= 0.9 (set)",
             STEP, (("                                env.cfg.quadmix.template_confidence).detach())",
                     "                                ).detach())"),)),
    Mutation("templates_from_the_current_step", "the paths paste the PREVIOUS step's templates",
             STEP, (("quadmix(S, T, *templates, cfg.quadmix.paths)",
                     "quadmix(S, T, *next_templates(S, T, pseudo, env), cfg.quadmix.paths)"),)),
    Mutation("loop_drops_the_templates", "the loop keeps each step's templates for the next", LOOP,
             (("            self.templates = out.templates\n", "            pass\n"),)),
    Mutation("mixed_loss_on_every_sample", "the mixed loss falls on the outermost samples", STEP,
             (("loss_samples(cfg.quadmix.paths)", "list(cfg.quadmix.paths)"),)),
    Mutation("mixed_loss_without_dacs_weights", "L_mix weighs pixels by the DACS weights", STEP,
             (("seg_loss(out, slice(i * b, (i + 1) * b), m.labels[:, 0], m.weights[:, 0], env.cfg)",
               "seg_loss(out, slice(i * b, (i + 1) * b), m.labels[:, 0], None, env.cfg)"),)),
    Mutation("target_loss_without_dacs_weights", "L_trg weighs pixels by the DACS weights", STEP,
             (("T.labels[:, 0],\n                                                                  T.weights[:, 0], cfg)",
               "T.labels[:, 0],\n                                                                  None, cfg)"),)),
    Mutation("lambda_t_dropped", "L_trg is weighted by lambda_T", STEP,
             (("terms[\"loss_trg\"] = cfg.train.lambda_t * seg_loss(", "terms[\"loss_trg\"] = seg_loss("),)),
    Mutation("aux_weight_dropped", "the CNN's auxiliary term is weighted 0.1", STEP,
             (("cfg.train.aux_weight * wce(out[\"aux\"]", "wce(out[\"aux\"]"),)),
    Mutation("aggregation_weight_dropped", "L_agg is weighted by aggregation.weight", STEP,
             (("cfg.aggregation.weight * aggregation_term(", "aggregation_term("),)),
    Mutation("feature_mix_labels_swapped", "phi_c' learns Y_tss and phi_d' learns Y_stt", STEP,
             (("            c, d = samples\n", "            d, c = samples\n"),)),
    Mutation("feature_mix_weight_dropped", "L_feat is weighted by feature_mix.weight", STEP,
             (("env.cfg.feature_mix.weight * feature_mix_loss(", "feature_mix_loss("),)),
    Mutation("feature_mix_region_is_the_union", "features fuse on the shared template region", STEP,
             (("fuse = shared_region(s_tpl.mask[:, 0], t_tpl.mask[:, 0], ss=\"ss\" in cfg.quadmix.paths,",
               "fuse = s_tpl.mask[:, 0] | t_tpl.mask[:, 0] if True else shared_region(s_tpl.mask[:, 0], t_tpl.mask[:, 0], ss=\"ss\" in cfg.quadmix.paths,"),)),
    Mutation("previous_features_not_warped", "the previous view's features are warped to t", STEP,
             (("prev_feats_w = warp(prev_feats[b:], resize_flow(flow, size))",
               "prev_feats_w = prev_feats[b:]"),)),
    Mutation("entropy_views_swapped", "the more certain view weighs more", AGG,
             (("entropies = torch.stack([mean_entropy(tgt_probs), mean_entropy(tgt_probs_prev_warped, prev_mask)])",
               "entropies = torch.stack([mean_entropy(tgt_probs_prev_warped, prev_mask), mean_entropy(tgt_probs)])"),)),
    Mutation("prototypes_without_minimum_pixels", "classes with < 5 pixels have no prototype", AGG,
             (("cur = class_prototypes(tgt_features, tgt_lab, num_classes, cfg.min_pixels)",
               "cur = class_prototypes(tgt_features, tgt_lab, num_classes, 1)"),
              ("prev = class_prototypes(tgt_features_prev_warped, prev_lab, num_classes, cfg.min_pixels)",
               "prev = class_prototypes(tgt_features_prev_warped, prev_lab, num_classes, 1)"))),
    Mutation("dacs_trains_the_quadmix_step", "`dacs` is same-step ClassMix, not a QuadMix setting",
             LOOP, (("            out = dacs_step(nets, source, target, env)",
                     "            out = quadmix_step(nets, source, target, self.templates, env)"),)),
    Mutation("dacs_adds_the_target_term", "`dacs` has no target-only term", STEP,
             (("            out = nets.student(S.frames, S.flows, **detail_draws(env))\n"
               "            terms = source_terms(out, S.labels[:, 0], env.cfg, b)\n",
               "            out = nets.student(*cat_clips([S, strong(T, env.cfg, g)]))\n"
               "            terms = source_terms(out, S.labels[:, 0], env.cfg, b)\n"
               "            terms[\"loss_trg\"] = wce(out[\"logits\"][b:].float(), T.labels[:, 0],\n"
               "                                     T.weights[:, 0])\n"),)),
    Mutation("ema_skips_buffers", "the EMA averages floating buffers (BN statistics) too",
             "udass/method/teacher.py",
             (("            if d[attr].is_floating_point():", "            if False:"),)),
    # the image recipe (docs/method.md, "The image recipe's components")
    Mutation("component_runs_with_its_switch_off", "every switch off gives the previous step", STEP,
             (("    mic = cfg.mic.enabled\n", "    mic = True\n"),)),
    Mutation("rcs_uniform_source_crop", "a source crop is redrawn until its drawn class covers enough",
             STEP, (("        if cfg.data.rcs and batch.domain == \"source\":\n",
                     "        if False:\n"),)),
    Mutation("rcs_class_of_another_step", "the crop uses the class its sample was drawn for", LOOP,
             (("self._rcs_draws.classes_for_step(k)", "self._rcs_draws.classes_for_step(k + 1)"),)),
    Mutation("fd_on_every_class", "the feature distance counts thing-class cells only", STEP,
             (("env.thing_classes, env.num_classes, cfg.fd.min_ratio)",
               "tuple(range(env.num_classes)), env.num_classes, cfg.fd.min_ratio)"),)),
    Mutation("fd_weight_dropped", "L_FD is weighted by fd.weight", STEP,
             (("return {\"loss_fd\": cfg.fd.weight * loss}", "return {\"loss_fd\": loss}"),)),
    Mutation("fd_full_image_under_hrda", "with HRDA the ImageNet encoder sees the context image", STEP,
             (("            images = context_images(images, cfg.model.hrda_context_scale)\n", ""),)),
    Mutation("hrda_detail_loss_dropped", "HRDA's detail prediction has its 0.1 loss", STEP,
             (("multi_resolution_loss(part, labels, weights, cfg.model.hrda_detail_loss)",
               "multi_resolution_loss(part, labels, weights, 0.0)"),)),
    Mutation("hrda_crops_from_the_global_generator", "detail crops come from the step's generator",
             STEP, (("return {\"generator\": env.generator} if env.cfg.model.hrda else {}",
                     "return {}"),)),
    Mutation("hrda_pseudo_labels_without_sliding", "the teacher's detail prediction slides windows",
             HRDA, (("hr = slide_inference(detail, images, self.detail_size, self.detail_stride, self.output_stride)",
                     "hr = _resize(detail(images), size)"),)),
    Mutation("mic_pseudo_labels_from_the_masked_image", "MIC learns the unmasked target's pseudo-labels",
             STEP, (("seg_loss(out, slice(None), T.labels[:, 0], T.weights[:, 0], cfg)",
                     "seg_loss(out, slice(None), pseudo_label(nets.teacher, frames, T.flows).labels[:, 0], "
                     "T.weights[:, 0], cfg)"),)),
    Mutation("mic_without_quality_weights", "MIC weighs pixels by the DACS quality weights", STEP,
             (("seg_loss(out, slice(None), T.labels[:, 0], T.weights[:, 0], cfg)",
               "seg_loss(out, slice(None), T.labels[:, 0], None, cfg)"),)),
    Mutation("mic_mask_not_applied", "the MIC input has its blocks removed", STEP,
             (("        frames = mask_frames(aug.frames, mask, fill)\n", "        frames = aug.frames\n"),)),
    Mutation("mic_target_not_strongly_augmented", "MIC masks the strongly augmented target", STEP,
             (("    aug = strong(T, cfg, g)\n", "    aug = T\n"),)),
    Mutation("mic_weight_dropped", "L_mic is weighted by mic.weight", STEP,
             (("loss = cfg.mic.weight * seg_loss(", "loss = seg_loss("),)),
)


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split("\n")
    return [p for p in out if p and (REPO / p).is_file()]


def check_planted(m: Mutation, root: Path = REPO) -> None:
    """Raise ValueError unless every `old` text of the mutation occurs exactly once."""
    text = (root / m.path).read_text()
    for old, _ in m.edits:
        n = text.count(old)
        if n != 1:
            raise ValueError(f"mutation {m.name}: {n} occurrences of {old!r} in {m.path}; expected 1")


def plant(m: Mutation, root: Path) -> None:
    check_planted(m, root)
    path = root / m.path
    text = path.read_text()
    for old, new in m.edits:
        text = text.replace(old, new, 1)
    path.write_text(text)


def copy_repo(dst: Path) -> None:
    for rel in tracked_files():
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)


def run_tests(root: Path, timeout: int = 900) -> tuple[bool, str]:
    """Run TESTS on the copy at `root`; (passed, last lines of the output)."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS]
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
    return proc.returncode == 0, tail


def run(names: list[str] | None = None, keep: bool = False) -> dict[str, str]:
    """Plant each selected mutation in a fresh copy and run the tests; {name: "caught" |
    "SURVIVED"}. The unmutated copy must pass first."""
    selected = [m for m in MUTATIONS if not names or m.name in names]
    unknown = set(names or ()) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutation(s) {sorted(unknown)}; see --list")
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="udass-mutations-") as tmp:
        base = Path(tmp) / "base"
        copy_repo(base)
        ok, tail = run_tests(base)
        if not ok:
            raise SystemExit(f"the unmutated copy fails its tests; fix them first:\n{tail}")
        for m in selected:
            work = Path(tmp) / m.name
            shutil.copytree(base, work)
            plant(m, work)
            t0 = time.time()
            passed, tail = run_tests(work)
            results[m.name] = "SURVIVED" if passed else "caught"
            print(f"{results[m.name]:8}  {m.name:42} {time.time() - t0:5.0f} s  ({m.rule})", flush=True)
            if not keep:
                shutil.rmtree(work)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="mutation names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--keep", action="store_true", help="keep the mutated copies (debugging)")
    a = ap.parse_args(argv)
    if a.list:
        for m in MUTATIONS:
            print(f"{m.name:42} {m.path:28} {m.rule}")
        return 0
    results = run(a.only, a.keep)
    survived = [n for n, r in results.items() if r != "caught"]
    print(f"{len(results) - len(survived)}/{len(results)} planted rule-breaks caught"
          + (f"; SURVIVED: {', '.join(survived)}" if survived else ""))
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
