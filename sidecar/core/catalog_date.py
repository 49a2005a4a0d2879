"""The date of the curated model catalog (`core/catalog.py`), on its own so that `info` (often a
host's first request) can report it without loading the catalog's table.

Must not know: anything else.
"""

from __future__ import annotations

from typing import Final

# Where these figures come from: the providers' own published price and model pages
# (openai.com/api/pricing, Anthropic's pricing and models overview pages, ai.google.dev's Gemini
# API pricing, docs.x.ai's models page, openrouter.ai's model pages) as the author knew them on
# this date. They were NOT re-read live when this file was written (no network); some were
# spot-checked against stored copies of Anthropic's pricing page and xAI's models page and against
# third-party price tables. Treat them as a dated snapshot: refresh the table in `core/catalog.py`
# (and this date) from the providers' pages, and use `PriceBook.apply_overrides` for prices fetched
# at run time.
CATALOG_DATE: Final = "2025-11-24"
