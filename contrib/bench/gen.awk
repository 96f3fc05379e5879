# Writes a `git fast-import` stream: one base commit on refs/heads/main with NFILES files laid
# out as dNN/sM/fKKK.txt (100 files a folder, 10 folders a top folder), then one commit per
# case on refs/heads/case-NAME, each a child of the base.
#
#   awk -v nfiles=20000 -v cases="mod1 mod100 del1000 ren1000" -f gen.awk | git fast-import
#
# A case is KIND COUNT: mod (content changed), del (deleted) or ren (renamed in its folder).
# The COUNT files are spread evenly over the tree, so an update touches many folders.
function path(i,   top, mid, f) {
    top = int(i / 1000); mid = int(i / 100) % 10; f = i % 100
    return sprintf("d%0" width "d/s%d/f%03d.txt", top, mid, f)
}
function content(i, variant,   s, l) {
    s = "// " path(i) "\n"
    for (l = 1; l <= 8; l++)
        s = s sprintf("let value_%d = compute(%d, %d); // line %d of file %d\n", l, (i * 31 + l * 7) % 1000, l, l, i)
    if (variant != "") s = s "// changed by " variant "\n"
    return s
}
function data(s) { printf "data %d\n%s\n", length(s), s }
function who(t) { return "Bench <bench@pullstart.invalid> " t " +0000" }
BEGIN {
    width = nfiles > 20000 ? 3 : 2
    printf "commit refs/heads/main\nmark :1\nauthor %s\ncommitter %s\n", who(1700000000), who(1700000000)
    data("base: " nfiles " files")
    for (i = 0; i < nfiles; i++) {
        printf "M 100644 inline %s\n", path(i)
        data(content(i, ""))
    }
    n = split(cases, list, " ")
    for (c = 1; c <= n; c++) {
        name = list[c]
        kind = substr(name, 1, 3); count = substr(name, 4) + 0
        t = 1700000000 + c * 60
        printf "commit refs/heads/case-%s\nauthor %s\ncommitter %s\n", name, who(t), who(t)
        data("case " name)
        printf "from :1\n"
        for (j = 0; j < count; j++) {
            i = int(j * nfiles / count) + int(nfiles / count / 2)
            if (kind == "mod") {
                printf "M 100644 inline %s\n", path(i)
                data(content(i, name))
            } else if (kind == "del") {
                printf "D %s\n", path(i)
            } else if (kind == "ren") {
                p = path(i); q = p; sub(/\.txt$/, "-renamed.txt", q)
                printf "R %s %s\n", p, q
            } else {
                print "gen.awk: unknown case kind " kind > "/dev/stderr"; exit 1
            }
        }
    }
}
