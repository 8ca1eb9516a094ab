"""A third-party dataset, registered without touching argse: striped images, one stripe period per class.

Its options live in the config section ``data.stripes_lt`` (``plugins: [tests.plugins.stripes_dataset]``).
"""

import torch
from pydantic import Field

from argse.config.schema import Section
from argse.data.datasets import Dataset, Source, register_dataset


class StripesOptions(Section):
    classes: int = Field(3, ge=2)
    per_class: int = 30
    """Training images per class before the long-tailed subsampling; the test set has half as many."""
    size: int = 8


@register_dataset("stripes_lt")
class StripesLT(Dataset):
    """Horizontal stripes of period class + 2 in a random colour, plus noise."""

    Options = StripesOptions

    def load(self) -> Source:
        g = torch.Generator().manual_seed(7)
        o = self.options
        rows = torch.arange(o.size)

        def draw(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
            labels = torch.arange(o.classes).repeat_interleave(per_class)
            stripes = ((rows[None, :] // (labels[:, None] + 2)) % 2).float()  # [N, size]
            colour = torch.rand(len(labels), 3, 1, 1, generator=g) * 0.5 + 0.5
            x = 255 * colour * stripes[:, None, :, None] + 20 * torch.randn(len(labels), 3, o.size, o.size, generator=g)
            return x.clamp(0, 255).round().to(torch.uint8), labels

        train_x, train_y = draw(o.per_class)
        test_x, test_y = draw(o.per_class // 2)
        return Source(train_x, train_y, test_x, test_y, [f"period_{c + 2}" for c in range(o.classes)])
