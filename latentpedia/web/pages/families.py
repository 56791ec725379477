"""Neighbours on the feature page and the family page, from the stored matches (store/families.py).

- `neighbour_fields(record, matches, explained)`: the feature page's `topkCosSimIndices` /
  `topkCosSimValues` (Neuronpedia's names: the source's own decoder-cosine list, the latent itself
  first), its `neighbours` in every source (self left out), and `continues_as` (the best match at
  the next deeper layer); each shown latent with its best explanation and score (`explained`, read
  fresh for every request by `neighbour_explanations`: explanations change without a rebuild).
- `family_page_data(store, model, source, index)`: the latent as the root of a tree across widths
  at its hook: its children in the next wider source are the latents among its best matches whose
  own best match back is this latent (a coarse latent "splits" into them), recursively; its best
  match in every narrower source; where it continues downstream and comes from upstream.
Activation correlation is preferred over decoder cosine when both were computed.
"""

from __future__ import annotations

from collections.abc import Sequence

from latentpedia.store import families
from latentpedia.store.families import BestExplanation, MatchRow
from latentpedia.store.records import SourceRecord
from latentpedia.web.family_schemas import FamilyNode, FamilyPage, MatchedLatent, MatchSummary, NeighbourGroup
from latentpedia.web.pages.common import NotFoundError, feature_url, source_record, source_url

PREFERRED = ("act_corr", "decoder_cos")
MIN_MATCH = 0.3  # weaker matches are not family
MAX_CHILDREN = 4
SHOWN_NEIGHBOURS = 8


def family_url(model: str, source: str, index: int) -> str:
    return f"{feature_url(model, source, index)}/family"


def family_api_url(model: str, source: str, index: int) -> str:
    return f"/api/family{source_url(model, source)}/{int(index)}"


Explained = dict[tuple[int, int], BestExplanation]  # {(source id, latent index): best explanation}


def _matched(model: str, source_id: int, source: str, index: int, value: float, explained: Explained) -> MatchedLatent:
    best = explained.get((source_id, index))
    return MatchedLatent.model_construct(
        source=source, index=index, value=value, url=feature_url(model, source, index), explanation=best.text if best else None,
        explanation_score=best.score if best else None, explanation_scorer=best.scorer if best else None,
    )  # fmt: skip


def _shown(row: MatchRow, skip: int | None) -> list[tuple[int, float]]:
    return [(i, v) for i, v in zip(row.indices, row.values, strict=True) if i != skip][:SHOWN_NEIGHBOURS]


def _preferred(rows: Sequence[MatchRow]) -> dict[int, MatchRow]:
    """{other source id: its best-method row}."""
    best: dict[int, MatchRow] = {}
    for row in rows:
        current = best.get(row.other_id)
        if current is None or PREFERRED.index(row.method) < PREFERRED.index(current.method):
            best[row.other_id] = row
    return best


def _continues(record: SourceRecord, matches: Sequence[MatchRow]) -> MatchRow | None:
    """The row whose best match is where this latent continues: the next deeper layer's best."""
    deeper = [r for r in _preferred(matches).values() if r.layer is not None and record.layer is not None and r.layer > record.layer and r.indices]
    return min(deeper, key=lambda r: (r.layer, -r.values[0])) if deeper else None


def shown_latents(record: SourceRecord, index: int, matches: Sequence[MatchRow]) -> dict[int, set[int]]:
    """{source id: latent indices} the feature page shows as neighbours or continuation."""
    shown: dict[int, set[int]] = {}
    for row in matches:
        shown.setdefault(row.other_id, set()).update(i for i, _ in _shown(row, index if row.other_id == record.id else None))
    return shown


def neighbour_explanations(store, record: SourceRecord, index: int, matches: Sequence[MatchRow], *, conn=None) -> Explained:
    """The best explanations of the latents `neighbour_fields` shows (one read, none without matches)."""
    return families.best_explanations(store, shown_latents(record, index, matches), conn=conn) if matches else {}


def neighbour_fields(record: SourceRecord, index: int, matches: Sequence[MatchRow], explained: Explained | None = None) -> dict:
    """The feature page's neighbour fields (see the module doc)."""
    model, explained = record.model_id, explained or {}
    own = next((r for r in matches if r.other_id == record.id and r.method == "decoder_cos"), None)
    groups = [
        NeighbourGroup.model_construct(source=r.other, method=r.method, latents=[
            _matched(model, r.other_id, r.other, i, v, explained) for i, v in _shown(r, index if r.other_id == record.id else None)])
        for r in matches
    ]  # fmt: skip
    row = _continues(record, matches)
    continues = _matched(model, row.other_id, row.other, row.indices[0], row.values[0], explained) if row else None
    return dict(
        topkCosSimIndices=list(own.indices) if own else [], topkCosSimValues=list(own.values) if own else [],
        neighbours=groups, continues_as=continues, family_url=family_url(model, record.name, index),
    )  # fmt: skip


class _Family:
    """Reads what a family page needs, one query per (source, other, method)."""

    def __init__(self, store, record: SourceRecord):
        self.store, self.model = store, record.model_id
        self.records = {r.id: r for r in store.list_sources(record.model_id) if r.status == "ready"}
        self.explained: dict[tuple[int, int], BestExplanation | None] = {}

    def explanation(self, source_id: int, index: int) -> BestExplanation | None:
        if (source_id, index) not in self.explained:
            self.explained.update(families.best_explanations(self.store, {source_id: {index}}))
            self.explained.setdefault((source_id, index), None)
        return self.explained[(source_id, index)]

    def node(self, record: SourceRecord, index: int, value: float | None, method: str | None) -> FamilyNode:
        best = self.explanation(record.id, index)
        return FamilyNode(source=record.name, width=record.d_sae, index=index, value=value, method=method,
                          explanation=best.text if best else None, explanation_score=best.score if best else None,
                          explanation_scorer=best.scorer if best else None, url=feature_url(self.model, record.name, index),
                          family_url=family_url(self.model, record.name, index))  # fmt: skip

    def rows(self, source_id: int, index: int) -> dict[int, MatchRow]:
        return _preferred(families.latent_matches(self.store, source_id, index))

    def grow(self, node: FamilyNode, record: SourceRecord, wider: list[SourceRecord]) -> None:
        """Attach the latents `node` splits into in the next wider source, and theirs below."""
        if not wider:
            return
        target, rest = wider[0], wider[1:]
        row = self.rows(record.id, node.index).get(target.id)
        if row is None:
            return
        candidates = [(i, v) for i, v in zip(row.indices, row.values, strict=True) if v >= MIN_MATCH]
        back = families.best_matches(self.store, target.id, record.id, row.method, [i for i, _ in candidates])
        kept = [(i, v) for i, v in candidates if back.get(i) and back[i][0] and back[i][0][0] == node.index]
        for i, v in (kept or candidates[:1])[:MAX_CHILDREN]:
            child = self.node(target, i, v, row.method)
            self.grow(child, target, rest)
            node.children.append(child)

    def linked(self, rows: dict[int, MatchRow], records: list[SourceRecord]) -> list[FamilyNode]:
        out = []
        for record in records:
            row = rows.get(record.id)
            if row is not None and row.indices:
                out.append(self.node(record, row.indices[0], row.values[0], row.method))
        return out


def family_page_data(store, model: str, source: str, index: int) -> FamilyPage:
    """The family of latent `index` of `model`/`source` (NotFoundError if unknown)."""
    record = source_record(store, model, source)
    if store.get_latent(record.id, index) is None:
        raise NotFoundError(f"source {source!r} of {model!r} has no built latent {index} (latents 0..{record.d_sae - 1})")
    family = _Family(store, record)
    same_hook = sorted((r for r in family.records.values() if r.hook_name == record.hook_name and r.id != record.id), key=lambda r: (r.d_sae, r.name))
    root = family.node(record, index, None, None)
    family.grow(root, record, [r for r in same_hook if r.d_sae > record.d_sae])
    rows = family.rows(record.id, index)
    others = sorted(family.records.values(), key=lambda r: (r.layer if r.layer is not None else -1, r.d_sae))
    deeper = [r for r in others if r.layer is not None and record.layer is not None and r.layer > record.layer and r.id in rows]
    shallower = [r for r in others if r.layer is not None and record.layer is not None and r.layer < record.layer and r.id in rows]
    return FamilyPage(
        modelId=model, layer=source, index=index, tree=root,
        parents=family.linked(rows, [r for r in same_hook if r.d_sae < record.d_sae]),
        continues_as=family.linked(rows, [r for r in deeper if r.layer == deeper[0].layer]) if deeper else [],
        comes_from=family.linked(rows, [r for r in shallower if r.layer == shallower[-1].layer]) if shallower else [],
        min_match=MIN_MATCH, url=family_url(model, source, index), api_url=family_api_url(model, source, index),
    )  # fmt: skip


def match_summaries(store, model: str, source: str) -> list[MatchSummary]:
    """Every computed match pair of a source, with its best-match distribution."""
    record = source_record(store, model, source)
    return [
        MatchSummary(source=p.source, other=p.other, other_url=source_url(model, p.other), method=p.method, k=p.k, median=p.median,
                     hist_edges=(p.meta.get("hist") or {}).get("edges", []), hist_counts=(p.meta.get("hist") or {}).get("counts", []),
                     n_tokens=p.meta.get("n_tokens"))  # fmt: skip
        for p in families.list_pairs(store, record.id)
    ]
