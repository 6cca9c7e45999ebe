#!/usr/bin/env python3
"""House metrics of a source tree (the restructure issue's acceptance numbers), as JSON:
the longest functions in lib/ (Universal Ctags: function start to end line), the largest files,
`if (` in the file that defines OffloadTrainer::train, and source files per folder.
  scripts/code_metrics.py [ROOT]     ROOT defaults to the checkout this script is in."""
import collections, json, os, shutil, subprocess, sys

root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..')
os.chdir(root)
files = subprocess.check_output(['git', 'ls-files', 'lib', 'apps', 'tests', 'bench'], text=True).split()
src = [f for f in files if f.endswith(('.h', '.cpp')) and os.path.exists(f)]
if shutil.which('ctags') is None:
    sys.exit('code_metrics: ctags is not installed (hint: apt-get install universal-ctags)')
tags = subprocess.run(['ctags', '--output-format=json', '--fields=+ne', '--kinds-c++=f', '-f', '-']
                      + [f for f in src if f.startswith('lib/')], capture_output=True, text=True).stdout
funcs = []
for line in tags.splitlines():
    t = json.loads(line)
    if 'end' in t:
        name = (t.get('scope', '') + '::' if t.get('scope') else '') + t['name']
        funcs.append({'function': name, 'file': t['path'], 'lines': t['end'] - t['line'] + 1})
funcs.sort(key=lambda f: -f['lines'])
trainer = next((f['file'] for f in funcs if f['function'].endswith('OffloadTrainer::train')), None)
sizes = sorted(({'file': f, 'lines': sum(1 for _ in open(f, errors='replace'))} for f in src),
               key=lambda x: -x['lines'])
per_folder = collections.Counter(os.path.dirname(f) for f in src if f.startswith('lib/'))
print(json.dumps({
    'longest_functions_lib': funcs[:8],
    'functions_over_150_lines': [f for f in funcs if f['lines'] > 150],
    'offload_trainer_train_lines': next((f['lines'] for f in funcs
                                         if f['function'].endswith('OffloadTrainer::train')), None),
    'trainer_file': trainer,
    'trainer_file_if_count': open(trainer).read().count('if (') if trainer else None,
    'largest_files': sizes[:8],
    'lib_source_files_per_folder': dict(sorted(per_folder.items())),
}, indent=1))
