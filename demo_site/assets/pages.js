// Page behaviour for the demo shop, chosen by <body data-page="...">.
(function () {
  "use strict";
  function $(selector) { return document.querySelector(selector); }
  function money(n) { return "£" + n.toFixed(2); }

  var pages = {
    product: function () {
      var sku = new URLSearchParams(location.search).get("sku") || "mug-01";
      var p = shop.catalog[sku];
      if (!p) { $("#product").textContent = "No such product."; return; }
      document.title = p.name + " · Intilery Demo Shop";
      $("#product-name").textContent = p.name;
      $("#product-price").textContent = money(p.price);
      $("#product-category").textContent = p.category;
      $("#product-swatch").style.background = p.color;
      intilery.track("Product Viewed", shop.productFields(sku));
      $("#add-to-cart").addEventListener("click", function () {
        shop.addToCart(sku);
        $("#added").hidden = false;
      });
    },

    cart: function () {
      var cart = shop.cart();
      var body = $("#cart-lines");
      var total = 0;
      cart.forEach(function (sku) {
        var p = shop.catalog[sku];
        total += p.price;
        var row = document.createElement("tr");
        row.innerHTML = "<td></td><td></td>";
        row.children[0].textContent = p.name;
        row.children[1].textContent = money(p.price);
        body.appendChild(row);
      });
      $("#cart-total").textContent = money(total);
      $("#cart-empty").hidden = cart.length > 0;
      var user = shop.user();
      $("#checkout").hidden = !(cart.length && user);
      $("#signin-first").hidden = !(cart.length && !user);
      $("#checkout").addEventListener("click", function () {
        var order = shop.checkout();
        if (!order) return;
        $("#cart").hidden = true;
        $("#thanks").hidden = false;
        $("#order-id").textContent = order.order_id;
        $("#order-total").textContent = money(order.revenue);
      });
    },

    signin: function () {
      $("#signin-form").addEventListener("submit", function (e) {
        e.preventDefault();
        shop.signIn($("#email").value.trim(), $("#name").value.trim() || "Shopper");
        var next = new URLSearchParams(location.search).get("next") || "/";
        // give the tag a moment to batch; it also sends anything left on pagehide
        setTimeout(function () { location.href = next.charAt(0) === "/" ? next : "/"; }, 150);
      });
    }
  };

  document.addEventListener("DOMContentLoaded", function () {
    var page = pages[document.body.getAttribute("data-page")];
    if (page) page();
  });
})();
