"""gaunt_md.native.memory: tables in huge pages are ordinary tensors that own their mapping."""

import gc
import mmap
import sys

import pytest
import torch

from gaunt_md.native.memory import HUGE_PAGE, huge_page_empty


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_huge_page_tensor_is_an_ordinary_writable_tensor(dtype):
    shape = (64, 4, 2048)  # 4 MB in float64
    t = huge_page_empty(shape, dtype)
    assert t.shape == shape and t.dtype == dtype and t.is_contiguous() and t.device.type == "cpu"
    t.copy_(torch.arange(t.numel(), dtype=dtype).view(shape))
    view = t[3:5, 1]  # the mapping must outlive every view of it
    del t
    gc.collect()
    torch.testing.assert_close(view[1, 7], torch.tensor(float(4 * 4 * 2048 + 2048 + 7), dtype=dtype))
    if sys.platform.startswith("linux") and hasattr(mmap, "MADV_HUGEPAGE"):
        assert huge_page_empty(shape, dtype).data_ptr() % HUGE_PAGE == 0  # starts on a huge page


def test_small_tensors_are_plain():
    t = huge_page_empty((3, 5), torch.float64)
    assert t.shape == (3, 5) and t.data_ptr() % 64 == 0


def test_kernels_put_large_radial_tables_in_huge_pages(tiny_model_path):
    """kernels.enable allocates its tables with huge_page_empty: those of 2 MB and more start on a
    2 MB boundary (Linux), and the fused model still gives the torch-ops numbers (test_kernels)."""
    from gaunt_md.model import kernels
    from gaunt_md.model.checkpoint import load_checkpoint

    if not kernels.available():
        pytest.skip(kernels.load_error())
    model, _ = load_checkpoint(tiny_model_path, dtype=torch.float64)
    model.requires_grad_(False)
    assert kernels.enable(model, radial_intervals=4096)
    tables = [layer.conv.radial_table for layer in model.layers]
    assert all(t.numel() > 0 and t.is_contiguous() for t in tables)
    large = [t for t in tables if t.numel() * t.element_size() >= HUGE_PAGE]
    assert large, "the test needs a table of at least 2 MB"
    if sys.platform.startswith("linux") and hasattr(mmap, "MADV_HUGEPAGE"):
        assert all(t.data_ptr() % HUGE_PAGE == 0 for t in large)
