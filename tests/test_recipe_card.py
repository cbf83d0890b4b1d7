"""Every config holds the official value of each field on its recipe card
(ssl_jax/recipe_card.py: the value and the official file it comes from)."""

import pytest

from ssl_jax import recipe_card


@pytest.mark.parametrize('name, arg', sorted(recipe_card.CARDS))
def test_config_matches_its_recipe_card(name, arg):
  assert recipe_card.differences(name, arg) == []


def test_a_differing_value_is_reported(monkeypatch, capsys):
  card = list(recipe_card.CARDS[('moco_v2_resnet50', '')])
  card[0] = recipe_card.Row(card[0].field, -1, 'a wrong source')
  monkeypatch.setitem(recipe_card.CARDS, ('moco_v2_resnet50', ''), card)
  assert [row.official for row, _ in recipe_card.differences('moco_v2_resnet50', '')] == [-1]
  assert recipe_card.main(['recipe_card', 'configs/moco_v2_resnet50.py']) == 1
  assert '**(differs)**' in capsys.readouterr().out
  assert recipe_card.main(['recipe_card', 'configs/no_such.py']) == 2
