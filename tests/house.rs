//! No import circles between the workspace's files.
//!
//! Every `.rs` file of every workspace crate is parsed, its modules are put in their crates'
//! module trees (`mod x;` declarations, `#[path]`, inline `mod x { .. }`), and every path that
//! names something of the same crate is resolved to the file that defines it: `use crate::..`,
//! `use super::..`, `use self::..`, `use child::..`, paths in code (`crate::x::y()`,
//! `super::T`, `child::f()`, also inside macro calls) and re-exports followed to the item's
//! definition. That gives a graph of files, and the test fails listing each circle in it.
//!
//! What is an edge: a file uses an item defined in another file. A parent's `mod child;` is not
//! an edge, nor is a re-export (`pub use child::Item;`) unless the re-exporting file uses the
//! item itself; a child that uses its parent's items is an edge, and so is a parent that calls
//! into a child (`child::f()`). Items re-exported through another module count for the file that
//! defines them, so a re-export cannot hide a circle.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

#[test]
fn no_import_circles_between_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let house = House::build(root);
    assert!(
        house.files.len() > 100,
        "only {} files found under {}: the workspace was not read",
        house.files.len(),
        root.display()
    );
    let unresolved = house.unresolved();
    assert!(
        unresolved.is_empty(),
        "paths into the crate that name nothing the checker can find (a checker bug or a \
         construct it does not know):\n{}",
        unresolved.join("\n")
    );
    let circles = house.circles();
    let known: BTreeSet<BTreeSet<&str>> = STILL_TO_CUT
        .iter()
        .map(|c| c.iter().copied().collect())
        .collect();
    let new: Vec<&String> = circles
        .iter()
        .filter(|c| !known.iter().any(|k| c.files == *k))
        .map(|c| &c.text)
        .collect();
    assert!(
        new.is_empty(),
        "{} import circle(s) between files; move what both sides need into a module below \
         them:\n\n{}",
        new.len(),
        new.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let cut: Vec<&BTreeSet<&str>> = known
        .iter()
        .filter(|k| !circles.iter().any(|c| c.files == **k))
        .collect();
    assert!(
        cut.is_empty(),
        "these circles are gone: take them off STILL_TO_CUT: {cut:?}"
    );
}

/// Circles the house still has, each as the files it ties together; the test fails when one
/// grows, a new one appears, or one is cut and still listed here.
const STILL_TO_CUT: &[&[&str]] = &[];

/// The checker finds a circle it is shown, follows re-exports, and takes neither a parent's
/// `mod` declaration nor its re-export of a child's item for an import.
#[test]
fn the_checker_sees_circles_and_only_circles() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[workspace]\nmembers = [\".\"]\n[package]\nname = \"x\"\n",
    );
    // lib.rs declares and re-exports: no edges. a.rs -> b.rs through a re-export in lib.rs;
    // b.rs -> a.rs inside a macro call: a circle. c.rs uses its parent lib.rs, which never uses
    // c.rs: no circle. d/mod.rs calls d/e.rs, which uses d's item: a circle.
    write(
        "src/lib.rs",
        "mod a; mod b; mod c; mod d;\npub use b::B;\npub use a::*;\npub struct Top;\n",
    );
    write(
        "src/a.rs",
        "pub fn a() -> crate::B { crate::B }\npub struct A;\n",
    );
    write(
        "src/b.rs",
        "pub struct B;\nfn f() { let _ = vec![crate::a::A]; }\n",
    );
    write("src/c.rs", "use super::Top;\nfn g(_: Top) {}\n");
    write(
        "src/d/mod.rs",
        "mod e;\npub struct D;\nfn h() { e::run(); }\n",
    );
    write(
        "src/d/e.rs",
        "pub(super) fn run() -> super::D { super::D }\n",
    );
    let house = House::build(dir.path());
    assert_eq!(house.files.len(), 6);
    assert!(house.unresolved().is_empty(), "{:?}", house.unresolved());
    let circles: Vec<Vec<&str>> = house
        .circles()
        .into_iter()
        .map(|c| c.files.into_iter().collect())
        .collect();
    assert_eq!(
        circles,
        [
            vec!["src/a.rs", "src/b.rs"],
            vec!["src/d/e.rs", "src/d/mod.rs"]
        ]
    );
}

type FileId = usize;
/// The file graph: (from, to) -> the paths that make the edge.
type Edges = BTreeMap<(FileId, FileId), BTreeSet<String>>;
type ModId = usize;

/// A module of some crate: a file, or an inline `mod x { .. }` in one.
struct Module {
    file: FileId,
    parent: Option<ModId>,
    /// The crate's root module.
    root: ModId,
    /// Where `mod x;` inside this module looks for x's file.
    child_dir: PathBuf,
    children: HashMap<String, ModId>,
    /// Items defined here (types, functions, constants, macros, ...).
    items: BTreeSet<String>,
    /// Names brought in by `use` at module level.
    uses: HashMap<String, Vec<Binding>>,
    /// `use path::*` at module level.
    globs: Vec<Binding>,
}

/// One leaf of a `use` tree.
#[derive(Clone)]
struct Binding {
    path: Vec<String>,
    /// `pub`, `pub(crate)`, ...: a re-export.
    public: bool,
    /// The module the `use` is in (its paths resolve from there).
    module: ModId,
}

/// Where a path leads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Item(FileId),
    Module(ModId),
    /// Another crate, a local name, or a variant brought in by a glob: not a file of ours.
    Elsewhere,
    /// A crate-relative path that names nothing found.
    Missing,
}

struct House {
    root: PathBuf,
    files: Vec<PathBuf>,
    asts: Vec<syn::File>,
    modules: Vec<Module>,
    /// Each (file, module) pair the file's text belongs to (a file shared by several test
    /// crates is in several trees), with the module's items to read.
    readings: Vec<ModId>,
}

impl House {
    fn build(root: &Path) -> Self {
        let mut files = Vec::new();
        for member in members(root) {
            collect_rs(&root.join(member), &mut files);
        }
        files.sort();
        files.dedup();
        let asts = files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                syn::parse_file(&text)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", f.display()))
            })
            .collect();
        let mut house = House {
            root: root.to_path_buf(),
            files,
            asts,
            modules: Vec::new(),
            readings: Vec::new(),
        };
        // Crate roots first, so that a file declared as a module is read as one; every file
        // no root reaches is a crate root of its own (examples, build scripts, tests, bins).
        let mut reached = vec![false; house.files.len()];
        let mut order: Vec<FileId> = (0..house.files.len()).collect();
        order.sort_by_key(|&f| !is_conventional_root(&house.files[f]));
        for f in order {
            if !reached[f] || is_conventional_root(&house.files[f]) {
                house.add_crate(f, &mut reached);
            }
        }
        house
    }

    fn add_crate(&mut self, file: FileId, reached: &mut [bool]) {
        let dir = self.files[file].parent().unwrap().to_path_buf();
        let root = self.new_module(file, None, dir);
        self.modules[root].root = root;
        self.load_file_module(root, reached);
    }

    fn new_module(&mut self, file: FileId, parent: Option<ModId>, child_dir: PathBuf) -> ModId {
        let root = parent.map_or(self.modules.len(), |p| self.modules[p].root);
        self.modules.push(Module {
            file,
            parent,
            root,
            child_dir,
            children: HashMap::new(),
            items: BTreeSet::new(),
            uses: HashMap::new(),
            globs: Vec::new(),
        });
        self.modules.len() - 1
    }

    fn load_file_module(&mut self, module: ModId, reached: &mut [bool]) {
        let file = self.modules[module].file;
        reached[file] = true;
        let items = self.asts[file].items.clone();
        self.readings.push(module);
        self.load_items(module, &items, reached);
    }

    /// Records what `items` define and import in `module`, and loads its child modules.
    fn load_items(&mut self, module: ModId, items: &[syn::Item], reached: &mut [bool]) {
        for item in items {
            let name = match item {
                syn::Item::Const(i) => Some(&i.ident),
                syn::Item::Enum(i) => Some(&i.ident),
                syn::Item::Fn(i) => Some(&i.sig.ident),
                syn::Item::Static(i) => Some(&i.ident),
                syn::Item::Struct(i) => Some(&i.ident),
                syn::Item::Trait(i) => Some(&i.ident),
                syn::Item::TraitAlias(i) => Some(&i.ident),
                syn::Item::Type(i) => Some(&i.ident),
                syn::Item::Union(i) => Some(&i.ident),
                syn::Item::Macro(i) => i.ident.as_ref(),
                _ => None,
            };
            if let Some(name) = name {
                self.modules[module].items.insert(name.to_string());
            }
            match item {
                syn::Item::Use(u) => {
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    let mut leaves = Vec::new();
                    use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
                    for (name, path) in leaves {
                        if u.leading_colon.is_some() {
                            continue;
                        }
                        let binding = Binding {
                            path,
                            public,
                            module,
                        };
                        match name {
                            Some(name) => self.modules[module]
                                .uses
                                .entry(name)
                                .or_default()
                                .push(binding),
                            None => self.modules[module].globs.push(binding),
                        }
                    }
                }
                syn::Item::Mod(m) => self.load_mod(module, m, reached),
                _ => {}
            }
        }
    }

    fn load_mod(&mut self, parent: ModId, m: &syn::ItemMod, reached: &mut [bool]) {
        let name = m.ident.to_string();
        let here = self.modules[parent].child_dir.clone();
        let path_attr = m.attrs.iter().find_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        });
        if let Some((_, items)) = &m.content {
            let file = self.modules[parent].file;
            let child = self.new_module(file, Some(parent), here.join(&name));
            self.modules[parent].children.insert(name, child);
            self.load_items(child, items, reached);
            return;
        }
        let parent_file = &self.files[self.modules[parent].file];
        let candidates = match &path_attr {
            Some(p) => vec![parent_file.parent().unwrap().join(p)],
            None => vec![
                here.join(format!("{name}.rs")),
                here.join(&name).join("mod.rs"),
            ],
        };
        let Some(path) = candidates.into_iter().find(|p| p.is_file()) else {
            panic!(
                "{}: `mod {name};` has no file under {}",
                parent_file.display(),
                here.display()
            );
        };
        let path = normalize(&path);
        let Ok(file) = self.files.binary_search(&path) else {
            panic!("{} is a module but was not listed", path.display());
        };
        let child_dir = if path.file_name().is_some_and(|n| n == "mod.rs") || path_attr.is_some() {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        let child = self.new_module(file, Some(parent), child_dir);
        self.modules[parent].children.insert(name, child);
        self.load_file_module(child, reached);
    }

    /// Resolves `path` as written in `module` (a `use` path or a path in code).
    fn resolve(&self, module: ModId, path: &[String], depth: usize) -> Target {
        let Some(first) = path.first() else {
            return Target::Module(module);
        };
        match first.as_str() {
            "crate" => self.walk(self.modules[module].root, &path[1..], depth, true),
            "self" => self.walk(module, &path[1..], depth, true),
            "super" => match self.modules[module].parent {
                Some(parent) => self.walk(parent, &path[1..], depth, true),
                None => Target::Missing,
            },
            "Self" => Target::Elsewhere,
            // A relative path: a name of this module, else another crate or a local name.
            _ => match self.walk(module, path, depth, false) {
                Target::Missing => Target::Elsewhere,
                found => found,
            },
        }
    }

    /// Follows `path` from inside `module`.
    fn walk(&self, module: ModId, path: &[String], depth: usize, strict: bool) -> Target {
        if depth > 40 {
            return Target::Missing;
        }
        let Some((first, rest)) = path.split_first() else {
            return Target::Module(module);
        };
        let m = &self.modules[module];
        match first.as_str() {
            "super" => {
                return match m.parent {
                    Some(parent) => self.walk(parent, rest, depth + 1, true),
                    None => Target::Missing,
                }
            }
            "self" => return self.walk(module, rest, depth + 1, true),
            _ => {}
        }
        if let Some(&child) = m.children.get(first) {
            return self.walk(child, rest, depth + 1, true);
        }
        if m.items.contains(first) {
            return Target::Item(m.file);
        }
        if let Some(bindings) = m.uses.get(first) {
            // A name may be bound twice in different namespaces (`use x::{self, X}` style);
            // the first binding that leads somewhere of ours wins.
            let mut outcome = Target::Elsewhere;
            for b in bindings {
                match self.resolve(b.module, &b.path, depth + 1) {
                    Target::Module(target) => return self.walk(target, rest, depth + 1, true),
                    Target::Item(file) => return Target::Item(file),
                    Target::Missing => outcome = Target::Missing,
                    Target::Elsewhere => {}
                }
            }
            return outcome;
        }
        for glob in &m.globs {
            if let Target::Module(target) = self.resolve(glob.module, &glob.path, depth + 1) {
                match self.walk(target, path, depth + 1, true) {
                    Target::Missing => {}
                    found => return found,
                }
            }
        }
        // Globs of enums (variants) and of other crates may bring the name in.
        if strict && m.globs.is_empty() {
            Target::Missing
        } else {
            Target::Elsewhere
        }
    }

    /// The edges of the file graph, (from, to) -> the paths that make it, and the
    /// crate-relative paths that named nothing.
    fn edges(&self) -> (Edges, Vec<String>) {
        let mut edges = Edges::new();
        let mut missing = Vec::new();
        for &module in &self.readings {
            let file = self.modules[module].file;
            self.module_edges(module, &self.asts[file].items, &mut edges, &mut missing);
        }
        missing.sort();
        missing.dedup();
        (edges, missing)
    }

    fn module_edges(
        &self,
        module: ModId,
        items: &[syn::Item],
        edges: &mut Edges,
        missing: &mut Vec<String>,
    ) {
        for item in items {
            if let syn::Item::Mod(syn::ItemMod {
                ident,
                content: Some((_, inner)),
                ..
            }) = item
            {
                let child = self.modules[module].children[&ident.to_string()];
                self.module_edges(child, inner, edges, missing);
            }
        }
        let file = self.modules[module].file;
        let mut add = |target: Target, path: &[String], edges: &mut Edges| match target {
            Target::Item(to) if to != file => {
                edges.entry((file, to)).or_default().insert(path.join("::"));
            }
            Target::Missing => {
                missing.push(format!("{}: {}", self.rel(file).display(), path.join("::")))
            }
            _ => {}
        };
        let mut code = Collector::default();
        for item in items {
            match item {
                // Inline modules were read above, as modules of their own.
                syn::Item::Mod(_) => {}
                // Module-level imports: a private one is an import of this file; a re-export
                // is followed by whoever uses it (and counts here only if this file uses it).
                syn::Item::Use(_) => {}
                _ => code.visit_item(item),
            }
        }
        let m = &self.modules[module];
        for bindings in m.uses.values() {
            for b in bindings.iter().filter(|b| !b.public) {
                let target = self.resolve(module, &b.path, 0);
                add(target, &b.path, edges);
            }
        }
        for g in m.globs.iter().filter(|g| !g.public) {
            match self.resolve(module, &g.path, 0) {
                Target::Module(target) => {
                    add(Target::Item(self.modules[target].file), &g.path, edges)
                }
                other => add(other, &g.path, edges),
            }
        }
        // `use` inside function bodies.
        for path in &code.local_uses {
            let target = self.resolve(module, path, 0);
            add(target, path, edges);
        }
        for path in &code.paths {
            let single = path.len() == 1;
            if single {
                // A bare name counts when a re-export of this module binds it (private imports
                // were counted above).
                let Some(bindings) = m.uses.get(&path[0]) else {
                    continue;
                };
                if !bindings.iter().any(|b| b.public) {
                    continue;
                }
            }
            let mut target = self.resolve(module, path, 0);
            if target == Target::Missing && !is_crate_relative(path) {
                target = Target::Elsewhere;
            }
            // A local module bound by a block-level `use` (`use crate::x::y; y::f()`).
            if target == Target::Elsewhere && !single {
                if let Some(local) = code.local_uses.iter().find(|u| u.last() == path.first()) {
                    let mut full = local.clone();
                    full.extend_from_slice(&path[1..]);
                    target = self.resolve(module, &full, 0);
                }
            }
            add(target, path, edges);
        }
    }

    fn unresolved(&self) -> Vec<String> {
        self.edges().1
    }

    /// Each strongly connected group of more than one file, with the imports that tie it.
    fn circles(&self) -> Vec<Circle<'_>> {
        let (edges, _) = self.edges();
        let n = self.files.len();
        let mut next = vec![Vec::new(); n];
        for &(a, b) in edges.keys() {
            next[a].push(b);
        }
        let groups = strongly_connected(&next);
        let mut out = Vec::new();
        for group in groups.into_iter().filter(|g| g.len() > 1) {
            let members: BTreeSet<FileId> = group.iter().copied().collect();
            let mut text = String::new();
            let names: Vec<String> = members
                .iter()
                .map(|&f| self.rel(f).display().to_string())
                .collect();
            writeln!(text, "circle: {}", names.join(", ")).unwrap();
            let files = members
                .iter()
                .map(|&f| self.rel(f).to_str().unwrap())
                .collect();
            for (&(a, b), paths) in &edges {
                if members.contains(&a) && members.contains(&b) {
                    let shown: Vec<&str> = paths.iter().take(4).map(String::as_str).collect();
                    writeln!(
                        text,
                        "  {} -> {}: {}{}",
                        self.rel(a).display(),
                        self.rel(b).display(),
                        shown.join(", "),
                        if paths.len() > 4 { ", ..." } else { "" }
                    )
                    .unwrap();
                }
            }
            out.push(Circle { files, text });
        }
        out.sort_by(|a, b| a.text.cmp(&b.text));
        out
    }

    fn rel(&self, file: FileId) -> &Path {
        self.files[file]
            .strip_prefix(&self.root)
            .unwrap_or(&self.files[file])
    }
}

/// Files tied in a circle, and a description of the imports that tie them.
#[derive(Debug)]
struct Circle<'a> {
    files: BTreeSet<&'a str>,
    text: String,
}

/// Paths met in code (not in attributes or doc comments), and `use` paths inside blocks.
#[derive(Default)]
struct Collector {
    paths: Vec<Vec<String>>,
    local_uses: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            self.paths
                .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if u.leading_colon.is_some() {
            return;
        }
        let mut leaves = Vec::new();
        use_leaves(&u.tree, &mut Vec::new(), &mut leaves);
        self.local_uses
            .extend(leaves.into_iter().map(|(_, path)| path));
    }

    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {
        // A module inside a function body is not something this checker follows.
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.visit_path(&mac.path);
        macro_paths(mac.tokens.clone(), &mut self.paths);
    }
}

/// Crate-relative paths written inside a macro call's tokens (`crate::a::b`, `super::c`).
fn macro_paths(tokens: TokenStream, out: &mut Vec<Vec<String>>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Group(g) => macro_paths(g.stream(), out),
            TokenTree::Ident(id)
                if ["crate", "super", "self"].contains(&id.to_string().as_str()) =>
            {
                let preceded_by_colons =
                    i >= 1 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
                if !preceded_by_colons {
                    let mut path = vec![id.to_string()];
                    let mut j = i + 1;
                    let colon = |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':');
                    while colon(tokens.get(j)) && colon(tokens.get(j + 1)) {
                        let Some(TokenTree::Ident(next)) = tokens.get(j + 2) else {
                            break;
                        };
                        path.push(next.to_string());
                        j += 3;
                    }
                    if path.len() > 1 {
                        out.push(path);
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The leaves of a `use` tree: (bound name, or `None` for a glob; full path).
fn use_leaves(
    tree: &syn::UseTree,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Option<String>, Vec<String>)>,
) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_leaves(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                if let Some(last) = prefix.last() {
                    out.push((Some(last.clone()), prefix.clone()));
                }
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                out.push((Some(name), path));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            if r.rename != "_" {
                out.push((Some(r.rename.to_string()), path));
            } else {
                // `use x::Trait as _;` still imports.
                out.push((Some(String::new()), path));
            }
        }
        syn::UseTree::Glob(_) => out.push((None, prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_leaves(t, prefix, out);
            }
        }
    }
}

fn is_crate_relative(path: &[String]) -> bool {
    path.first()
        .is_some_and(|s| s == "crate" || s == "super" || s == "self")
}

/// Files that are crate roots by Cargo's conventions.
fn is_conventional_root(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_str().unwrap();
    let parent = path.parent().unwrap();
    let dir = parent.file_name().and_then(|d| d.to_str()).unwrap_or("");
    let grand = parent
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|d| d.to_str())
        .unwrap_or("");
    (dir == "src" && (name == "lib.rs" || name == "main.rs"))
        || (dir == "bin" && grand == "src")
        || (["tests", "benches", "examples"].contains(&dir))
        || name == "build.rs"
}

/// The workspace's member directories, from the root manifest's `members = [..]`.
fn members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let start = manifest
        .find("members")
        .and_then(|i| manifest[i..].find('[').map(|j| i + j + 1))
        .expect("the root Cargo.toml lists no workspace members");
    let end = start + manifest[start..].find(']').unwrap();
    manifest[start..end]
        .split(',')
        .map(|s| s.trim().trim_matches('"'))
        .filter(|s| !s.is_empty())
        .map(|s| root.join(s))
        .collect()
}

/// Every `.rs` file under `dir`, not descending into other packages or build output.
fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            // Another package is a member of its own, or not of the workspace (fuzz).
            if name == "target" || name.starts_with('.') || path.join("Cargo.toml").is_file() {
                continue;
            }
            collect_rs(&path, out);
        } else if name.ends_with(".rs") {
            out.push(normalize(&path));
        }
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// Tarjan's strongly connected components.
fn strongly_connected(next: &[Vec<usize>]) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        groups: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for i in 0..s.next[v].len() {
            let w = s.next[v][i];
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut group = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack[w] = false;
                group.push(w);
                if w == v {
                    break;
                }
            }
            s.groups.push(group);
        }
    }
    let n = next.len();
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        groups: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.groups
}
