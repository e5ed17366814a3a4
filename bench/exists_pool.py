"""The seed's pattern for checking many paths (seed 000): a process per core,
pool.imap_unordered over the paths, one HEAD per path (requests.head, as
blobfile's exists does over http). Prints how many exist and how many do not.

usage: exists_pool.py URLS.txt
"""
import multiprocessing as mp
import sys

import requests


def check_exists(url):
    r = requests.head(url)
    return url, r.status_code == 200


def main():
    urls = [l.strip() for l in open(sys.argv[1]) if l.strip()]
    yes = no = 0
    with mp.Pool() as pool:
        for _, exists in pool.imap_unordered(check_exists, urls):
            if exists:
                yes += 1
            else:
                no += 1
    print(yes, no)


if __name__ == "__main__":
    main()
