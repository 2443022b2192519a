#!/usr/bin/env bash
# Checks a PDF book with real tools, installing them if missing (so `cargo test` needs none):
#   .ci/check-pdf.sh BOOK.pdf [PAGES]
# qpdf --check validates the structure and xref; pdfinfo reads it as poppler does (and the page
# count is compared with PAGES when given); pdfimages -list must show only 1-bit CCITT images; and
# the first image page, rendered by pdftoppm, must be mostly white (line art), which catches an
# inverted black/white polarity that every structural check would pass.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 BOOK.pdf [PAGES]" >&2
    exit 2
fi
pdf=$1
pages=${2:-}
if [[ ! -f $pdf ]]; then
    echo "check-pdf: $pdf does not exist" >&2
    exit 1
fi

if ! command -v qpdf >/dev/null || ! command -v pdfinfo >/dev/null || ! command -v pdfimages >/dev/null; then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q qpdf poppler-utils
fi

echo "== qpdf --check $pdf"
qpdf --check "$pdf"

echo "== pdfinfo $pdf"
info=$(pdfinfo "$pdf")
echo "$info"
if [[ -n $pages ]]; then
    actual=$(awk '/^Pages:/ { print $2 }' <<<"$info")
    if [[ $actual != "$pages" ]]; then
        echo "check-pdf: $pdf has $actual pages, expected $pages" >&2
        exit 1
    fi
fi

echo "== pdfimages -list $pdf"
list=$(pdfimages -list "$pdf")
echo "$list"
# Columns: page num type width height color comp bpc enc ...; two header lines.
images=$(awk 'NR > 2' <<<"$list" | wc -l)
if [[ $images -eq 0 ]]; then
    echo "check-pdf: $pdf holds no images" >&2
    exit 1
fi
wrong=$(awk 'NR > 2 && ($8 != 1 || $9 != "ccitt")' <<<"$list")
if [[ -n $wrong ]]; then
    echo "check-pdf: images that are not 1-bit CCITT:" >&2
    echo "$wrong" >&2
    exit 1
fi

page=$(awk 'NR == 3 { print $1 }' <<<"$list")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
pdftoppm -r 20 -gray -f "$page" -l "$page" -singlefile "$pdf" "$scratch/page"
# pdftoppm writes "P5\n<width> <height>\n255\n" and then one byte per pixel.
read -r width height < <(sed -n 2p "$scratch/page.pgm")
mean=$(tail -c $((width * height)) "$scratch/page.pgm" | od -An -tu1 -v |
    awk '{ for (i = 1; i <= NF; i++) { sum += $i; n++ } } END { print int(sum / n) }')
echo "== page $page rendered: mean gray $mean of 255"
if [[ $mean -le 128 ]]; then
    echo "check-pdf: page $page renders mostly black: inverted black/white?" >&2
    exit 1
fi
echo "check-pdf: $pdf is valid; $images image(s), all 1-bit CCITT, page $page mostly white"
