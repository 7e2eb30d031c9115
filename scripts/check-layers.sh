#!/usr/bin/env bash
# Keeps the library's layers: a module may use its own layer and the layers below it, never one
# above. The order follows the data flow (README, Layout):
#
#   ops → sink → bundle → plan → source → registry/daemon → model
#
# Every `crate::NAME` path in the library's code (comments aside, `use crate::{a, b}` included)
# is checked against the table below; an import of a higher layer, or a top-level module missing
# from the table, fails with the file, the line and both layers. The bundle and the sinks see
# sources only through the plan. The binary (src/main.rs,
# src/cli/) sits above everything and is not checked.
#
# Usage: scripts/check-layers.sh [SRC_DIR]   (default: src/ of this repository)
set -euo pipefail
src="${1:-$(dirname "$0")/../src}"

exec perl -e '
use strict; use warnings;
my $src = shift;
# layer number and name of every top-level module of the library
my %layer;
my @names = ("model", "registry/daemon", "source", "plan", "bundle", "sink", "ops");
my @table = (
    [0, qw(archive atomic attachments cleanup cosign digest error hash_pool image json layers local_file progress reference transfer walk)],
    [1, qw(registry daemon)],
    [2, qw(source)],
    [3, qw(plan)],
    [4, qw(bundle volume)],
    [5, qw(sink state serve)],
    [6, qw(ops)],
);
for my $row (@table) { my ($n, @mods) = @$row; $layer{$_} = $n for @mods; }
# Layers that see sources only through the plan (a blob is opened by plan::Blob::open).
my %not_past = (bundle => ["source"], sink => ["source"], serve => ["source"]);
# The fuzzing entry points reach into every layer on purpose (doc(hidden), not part of the API).
my %exempt = (fuzz => 1);

my @files = split /\n/, `find "$src" -name "*.rs" -not -path "*/cli/*" -not -name main.rs | sort`;
die "check-layers: no Rust files under $src\n" unless @files;
my $bad = 0;
for my $file (@files) {
    (my $rel = $file) =~ s{^\Q$src\E/?}{};
    next if $rel eq "lib.rs";
    my ($top) = $rel =~ m{^([^/.]+)};
    next if $exempt{$top};
    if (!exists $layer{$top}) {
        print "$file: module `$top` has no layer in scripts/check-layers.sh; add it to the table\n";
        $bad = 1; next;
    }
    my $own = $layer{$top};
    open my $fh, "<", $file or die "$file: $!\n";
    my $text = do { local $/; <$fh> };
    my @lines = split /\n/, $text;
    my $code = join "\n", map { my $l = $_; $l =~ s{^\s*//.*}{}; $l =~ s{\s//.*}{}; $l } @lines;
    my @used;
    # crate::NAME
    while ($code =~ /\bcrate::([a-z_][a-z0-9_]*)/g) { push @used, [$1, pos($code)]; }
    # crate::{a, b::c, ...}, possibly over several lines
    while ($code =~ /\bcrate::\{([^}]*)\}/g) {
        my ($list, $end) = ($1, pos($code));
        push @used, [$1, $end] while $list =~ /(?:^|,)\s*([a-z_][a-z0-9_]*)/g;
    }
    for my $u (@used) {
        my ($dep, $at) = @$u;
        next if $dep eq "self" || $dep eq "super";
        my $line = 1 + (() = substr($code, 0, $at) =~ /\n/g);
        if (!exists $layer{$dep}) {
            next if $exempt{$dep};
            print "$file:$line: uses `crate::$dep`, which has no layer in scripts/check-layers.sh\n";
            $bad = 1; next;
        }
        if (grep { $_ eq $dep } @{ $not_past{$top} // [] }) {
            print "$file:$line: `$top` ($names[$own]) uses `crate::$dep`, which it must reach through the plan\n";
            $bad = 1; next;
        }
        next if $layer{$dep} <= $own;
        print "$file:$line: `$top` ($names[$own]) uses `crate::$dep` ($names[$layer{$dep}]), a higher layer\n";
        $bad = 1;
    }
}
if ($bad) {
    print "check-layers: the order is ", join(" → ", reverse @names), "; a module uses its own layer and those to its right\n";
    exit 1;
}
' "$src"
