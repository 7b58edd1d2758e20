// segsql docs: the catalogue's filters and pagination, and the SQL tabs. No dependencies.
"use strict";
(function () {
  function setUpTabs() {
    document.querySelectorAll("[data-tabs]").forEach(function (box) {
      var tabs = box.querySelectorAll("[role=tab]");
      tabs.forEach(function (tab) {
        tab.addEventListener("click", function () {
          tabs.forEach(function (other) {
            var selected = other === tab;
            other.setAttribute("aria-selected", selected ? "true" : "false");
            document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
          });
        });
      });
    });
  }

  function setUpCatalogue(source) {
    var rows = JSON.parse(source.textContent);
    var pageSize = Number(source.dataset.pageSize) || 50;
    var search = document.getElementById("search");
    var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-facet]"));
    var sort = document.getElementById("sort");
    var body = document.getElementById("results");
    var summary = document.getElementById("summary");
    var pageLabel = document.getElementById("page");
    var prev = document.getElementById("prev");
    var next = document.getElementById("next");
    var withMembers = rows.length > 0 && rows[0].members !== null && rows[0].members !== undefined;
    var page = 0;
    rows.forEach(function (r) {
      r.text = [r.name, r.description, r.owner, r.kind, r.entity, r.tags.join(" "), r.columns.join(" ")]
        .join(" ").toLowerCase();
    });

    function matches(row, words, facets) {
      for (var i = 0; i < facets.length; i++) {
        var facet = facets[i];
        if (!facet.value) continue;
        if (facet.name === "tag" ? row.tags.indexOf(facet.value) < 0 : row[facet.name] !== facet.value) return false;
      }
      return words.every(function (w) { return row.text.indexOf(w) >= 0; });
    }

    function cell(text, className) {
      var td = document.createElement("td");
      td.textContent = text;
      if (className) td.className = className;
      return td;
    }

    function rowElement(row) {
      var tr = document.createElement("tr");
      var name = document.createElement("td");
      var link = document.createElement("a");
      link.href = "segments/" + encodeURIComponent(row.name) + ".html";
      link.textContent = row.name;
      name.appendChild(link);
      tr.appendChild(name);
      tr.appendChild(cell(row.kind));
      tr.appendChild(cell(row.entity));
      tr.appendChild(cell(row.owner));
      tr.appendChild(cell(row.tags.map(function (t) { return "#" + t; }).join(" ")));
      if (withMembers) tr.appendChild(cell(row.members === null ? "" : row.members.toLocaleString("en-US"), "num"));
      var desc = cell(row.description, "desc");
      desc.title = row.description;
      tr.appendChild(desc);
      return tr;
    }

    function state() {
      return {
        words: search.value.toLowerCase().split(/\s+/).filter(Boolean),
        facets: selects.map(function (s) { return { name: s.dataset.facet, value: s.value }; }),
      };
    }

    function saveHash() {
      var parts = [];
      if (search.value) parts.push("q=" + encodeURIComponent(search.value));
      selects.forEach(function (s) { if (s.value) parts.push(s.dataset.facet + "=" + encodeURIComponent(s.value)); });
      if (sort && sort.value !== "name") parts.push("sort=" + sort.value);
      try { history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname); } catch (e) { /* some browsers refuse on file:// */ }
    }

    function loadHash() {
      location.hash.replace(/^#/, "").split("&").forEach(function (part) {
        var pair = part.split("=");
        var value = decodeURIComponent(pair[1] || "");
        if (pair[0] === "q") search.value = value;
        if (pair[0] === "sort" && sort) sort.value = value;
        selects.forEach(function (s) {
          if (s.dataset.facet === pair[0] && Array.prototype.some.call(s.options, function (o) { return o.value === value; })) s.value = value;
        });
      });
    }

    function render() {
      var current = state();
      var found = rows.filter(function (r) { return matches(r, current.words, current.facets); });
      if (sort && sort.value === "members") {
        found = found.slice().sort(function (a, b) { return (b.members || 0) - (a.members || 0) || (a.name < b.name ? -1 : 1); });
      }
      var pages = Math.max(1, Math.ceil(found.length / pageSize));
      page = Math.min(page, pages - 1);
      var shown = found.slice(page * pageSize, (page + 1) * pageSize);
      var fragment = document.createDocumentFragment();
      shown.forEach(function (r) { fragment.appendChild(rowElement(r)); });
      body.replaceChildren(fragment);
      summary.textContent = found.length === rows.length
        ? rows.length + " segments"
        : found.length + " of " + rows.length + " segments match";
      pageLabel.textContent = "page " + (page + 1) + " of " + pages;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }

    function refilter() { page = 0; render(); saveHash(); }
    search.addEventListener("input", refilter);
    selects.forEach(function (s) { s.addEventListener("change", refilter); });
    if (sort) sort.addEventListener("change", refilter);
    prev.addEventListener("click", function () { page -= 1; render(); });
    next.addEventListener("click", function () { page += 1; render(); });
    window.addEventListener("hashchange", function () { loadHash(); page = 0; render(); });
    loadHash();
    render();
  }

  setUpTabs();
  var source = document.getElementById("catalogue");
  if (source) setUpCatalogue(source);
})();
