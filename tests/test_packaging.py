"""pyproject.toml: the wheel holds every module and the shipped data, and its pins are
requirements.txt's."""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS_MARKER = '# Tests only'  # requirements.txt: the lines below it are test-only.


def _requirement(line: str) -> str | None:
  """A requirements.txt line without its comment and spaces, or None if it has none."""
  spec = line.split('#', 1)[0].replace(' ', '')
  return spec or None


def requirements_sections(text: str) -> tuple[list[str], list[str]]:
  """(runtime, test-only) requirements of requirements.txt, split at TESTS_MARKER."""
  runtime, tests, current = [], [], None
  current = runtime
  for line in text.splitlines():
    if line.startswith(TESTS_MARKER):
      current = tests
    spec = _requirement(line)
    if spec:
      current.append(spec)
  return runtime, tests


def _name(spec: str) -> str:
  return re.split(r'[<>=!~;\[]', spec, maxsplit=1)[0].lower().replace('_', '-')


def test_pyproject_pins_are_requirements_txt():
  runtime, tests = requirements_sections((ROOT / 'requirements.txt').read_text())
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  assert runtime and tests and 'torch==2.14.1' in tests and 'jax==0.10.2' in runtime
  for listed, declared, where in (
      (runtime, project['dependencies'], 'project.dependencies'),
      (tests, project['optional-dependencies']['test'], 'project.optional-dependencies.test')):
    declared = [d.replace(' ', '') for d in declared]
    assert sorted(listed, key=_name) == sorted(declared, key=_name), (
        f'requirements.txt and pyproject.toml {where} differ: only in requirements.txt '
        f'{sorted(set(listed) - set(declared))}, only in pyproject.toml '
        f'{sorted(set(declared) - set(listed))}. Add the line to both (test-only packages '
        f'below "{TESTS_MARKER}" and in the test extra).')


def test_requirements_split_at_the_marker():
  runtime, tests = requirements_sections(
      'a==1  # why\n# comment\nb>=2\n# Tests only: x\nc==3\n\nd  # e\n')
  assert (runtime, tests) == (['a==1', 'b>=2'], ['c==3', 'd'])


def _sources(package: str) -> set[str]:
  """The package's .py and data files in the checkout (as paths in a wheel)."""
  found = set()
  for folder, dirs, names in os.walk(ROOT / package):
    dirs[:] = [d for d in dirs if d != '__pycache__']
    for name in names:
      if name.endswith(('.py', '.npz')):
        found.add((pathlib.Path(folder) / name).relative_to(ROOT).as_posix())
  return found


def test_wheel_holds_the_modules_and_the_data(tmp_path):
  """Built from a copy (a build in the checkout would leave build/ and egg-info there),
  offline, with the installed setuptools."""
  source = tmp_path / 'src'
  source.mkdir()
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(ROOT / name, source / name)
  for package in ('ssl_jax', 'configs'):
    shutil.copytree(ROOT / package, source / package,
                    ignore=shutil.ignore_patterns('__pycache__'))
  done = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps',
                         '--no-build-isolation', '--no-index', '-w', str(tmp_path / 'dist'),
                         str(source)], capture_output=True, text=True, check=False)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
  (wheel,) = (tmp_path / 'dist').glob('ssl_jax-0.1.0-*.whl')
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    metadata = archive.read('ssl_jax-0.1.0.dist-info/METADATA').decode()
  expected = _sources('ssl_jax') | _sources('configs')
  assert 'ssl_jax/data/files/cifar10_5k.npz' in expected
  assert expected <= names, sorted(expected - names)
  assert 'Requires-Dist: jax==0.10.2' in metadata
  assert 'Requires-Dist: torch==2.14.1; extra == "test"' in metadata
