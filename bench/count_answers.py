"""count_answers.py FILE: 'PRESENT ABSENT' from bulkget exists lines (PATH\ttrue),
curl -w '%{http_code}' lines, or the pool script's 'YES NO' line."""
import sys

yes = no = 0
for line in open(sys.argv[1]):
    f = line.split()
    if not f:
        continue
    if len(f) == 2 and f[0].isdigit() and f[1].isdigit():
        yes, no = int(f[0]), int(f[1])
        break
    v = f[-1]
    if v in ("true", "200"):
        yes += 1
    elif v in ("false", "404"):
        no += 1
print(yes, no)
