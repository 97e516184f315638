"""Cost bookkeeping from manifest entries (hand-made numbers), and layer-dropped students."""

from __future__ import annotations

import pytest
import torch

from minidisc.schedules.cost import estimate_direct_kd, nominal_compute, schedule_cost


def entry(student: float, teacher: float, tokens: int = 100, saved: float = 0.0, **extra):
    compute = {"student_train_flops": student, "teacher_forward_flops": teacher, "tokens": tokens, "sequences": 10,
               "steps": 2, "wall_time_s": 1.5}
    if saved:
        compute["teacher_cache"] = {"hits": 10, "misses": 0, "bypassed": 0, "flops_saved": saved}
    return {"status": "done", "wall_time_s": 2.0, "compute": compute, **extra}


def test_nominal_adds_back_cache_savings():
    assert nominal_compute(entry(30.0, 4.0, saved=6.0)).train_flops == 40.0


def test_schedule_cost_sums_stages_spent_excludes_reuse_and_multiple():
    stages = {
        "teacher": entry(500.0, 0.0),
        "sparsified": entry(20.0, 0.0),
        "hop-s0.5": entry(30.0, 10.0, reused_from="/elsewhere"),
        "hop-s0.5-s0.9": entry(6.0, 3.0, saved=2.0),
        "student": {"status": "done", "wall_time_s": 1.0},
    }
    cost = schedule_cost(stages, ["hop-s0.5", "hop-s0.5-s0.9"], {"train_flops": 17.0, "source": "test"})
    assert cost["total"]["train_flops"] == 30 + 10 + 6 + 3 + 2
    assert cost["spent"]["train_flops"] == 6 + 3  # reused stage and cache hits cost nothing here
    assert cost["preparation"]["train_flops"] == 520
    assert cost["training_runs"] == 2
    assert cost["multiple"] == pytest.approx(51 / 17)
    assert cost["total"]["tokens"] == 200


def test_direct_kd_estimate_scales_the_first_stage_students_to_the_target():
    from transformers import BertConfig

    from minidisc.compute.flops import forward_flops
    from minidisc.elastic.spec import SubnetSpec

    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    half, quarter = SubnetSpec((2, 2), (32, 32)), SubnetSpec((1, 1), (16, 16))
    first = entry(student=300.0, teacher=50.0, tokens=100)  # 10 tokens per sequence
    ref = estimate_direct_kd(first, config, quarter, [half])
    ratio = forward_flops(config, quarter, seq_len=10) / forward_flops(config, half, seq_len=10)
    assert ref["student_flop_ratio"] == pytest.approx(ratio)
    assert ratio == pytest.approx(0.5)  # every FLOP term is linear in kept heads or units: half of them, half the FLOPs
    assert ref["train_flops"] == pytest.approx(50.0 + 300.0 * ratio)


def test_drop_layers_keeps_chosen_layers_and_leaves_the_teacher():
    from transformers import BertConfig, BertForSequenceClassification

    from minidisc.errors import ConfigError
    from minidisc.schedules.students import bottom_layers, drop_layers

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16)
    teacher = BertForSequenceClassification(config).eval()
    ids = torch.tensor([[2, 7, 9, 3]])
    student = drop_layers(teacher, bottom_layers(2)).eval()
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 3
    assert len(teacher.bert.encoder.layer) == 3
    with torch.no_grad():
        t = teacher(input_ids=ids, output_hidden_states=True).hidden_states
        s = student(input_ids=ids, output_hidden_states=True).hidden_states
    assert len(s) == 3
    torch.testing.assert_close(s[2], t[2])  # the bottom two layers compute what they did in the teacher
    skip = drop_layers(teacher, (0, 2)).eval()
    with torch.no_grad():
        out = skip(input_ids=ids, output_hidden_states=True).hidden_states
        expected = teacher.bert.encoder.layer[2](t[1])[0] if isinstance(teacher.bert.encoder.layer[2](t[1]), tuple) \
            else teacher.bert.encoder.layer[2](t[1])
    torch.testing.assert_close(out[2], expected)  # layer 2 applied right after layer 0
    with pytest.raises(ConfigError):
        drop_layers(teacher, (1, 0))
    with pytest.raises(ConfigError):
        drop_layers(teacher, (0, 3))
