<?php
/*
 * `php -S 127.0.0.1:<port> router.php` for the browser tests: one PBX's admin
 * pages around the module's settings page, with the PBX's own UI toolkit
 * (pinned from npm, so style collisions show), and the module's real PHP
 * answering the page's calls. The bundled featpkg runs behind it against a
 * PBX tree in a temp dir (FEATPKG_ROOT and friends, set by the test).
 *
 * Environment (set by tests/browser_page.rs):
 *   FEATPKG_BROWSER_PBX     mikopbx | freepbx
 *   FEATPKG_BROWSER_MODULE  the extracted module directory
 *   FEATPKG_BROWSER_STUBS   tests/fixtures/php (the PBX base-class stand-ins)
 *   FEATPKG_BROWSER_NPM     tests/browser/node_modules
 *   FEATPKG_BROWSER_TOKEN   MikoPBX 2026: the Bearer token the REST calls need
 *   FEATPKG_BROWSER_VARLIB  FreePBX: ASTVARLIBDIR (the page keeps its data there)
 *
 * URL layouts, as each PBX has them (reference/ui.md):
 *   MikoPBX  /admin-cabinet/module-featpkg/module-featpkg/index     the page
 *            /admin-cabinet/assets/{js,css}/cache/ModuleFeatpkg/<f> public/assets/{js,css}/<f>
 *            /pbxcore/api/modules/ModuleFeatpkg/<action>           FeatpkgConf::moduleRestAPICallback
 *   FreePBX  /admin/config.php?display=featpkg                     page.featpkg.php
 *            /admin/assets/featpkg/{js,css}/<f>                    assets/{js,css}/<f>
 *            /admin/ajax.php?module=featpkg&command=<action>       Featpkg ajaxRequest/ajaxHandler
 */

$pbx = getenv('FEATPKG_BROWSER_PBX');
$module = rtrim((string) getenv('FEATPKG_BROWSER_MODULE'), '/');
$stubs = getenv('FEATPKG_BROWSER_STUBS');
$npm = getenv('FEATPKG_BROWSER_NPM');
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);

function send_file(string $file, string $type): void
{
    if (!is_file($file)) {
        http_response_code(404);
        echo "not found";
        return;
    }
    header("Content-Type: $type");
    readfile($file);
}

function type_of(string $file): string
{
    return str_ends_with($file, '.css') ? 'text/css' : (str_ends_with($file, '.js') ? 'application/javascript' : 'application/octet-stream');
}

// The PBX's own UI toolkit, pinned from npm.
if (str_starts_with($path, '/vendor/')) {
    $rel = substr($path, strlen('/vendor/'));
    if (str_contains($rel, '..')) {
        http_response_code(400);
        return;
    }
    // Semantic UI's CSS loads its icon fonts relative to itself.
    send_file("$npm/$rel", type_of($rel));
    return;
}

if ($pbx === 'mikopbx') {
    if (preg_match('#^/admin-cabinet/assets/(js|css)/cache/ModuleFeatpkg/([\w.-]+)$#', $path, $m)) {
        send_file("$module/public/assets/{$m[1]}/{$m[2]}", type_of($m[2]));
        return;
    }
    if ($path === '/admin-cabinet/module-featpkg/module-featpkg/index') {
        $lang = preg_match('/^[a-z]{2}$/', $_GET['lang'] ?? '') ? $_GET['lang'] : 'en';
        $view = file_get_contents("$module/App/Views/ModuleFeatpkg/index.volt");
        $token = getenv('FEATPKG_BROWSER_TOKEN');
        // MikoPBX's layout (src/AdminCabinet/Views/layouts/main.volt): Semantic UI,
        // the sidebar, the module header, the view inside #content-frame.
        echo <<<HTML
<!DOCTYPE html>
<html lang="$lang"><head><meta charset="utf-8"><title>MikoPBX | featpkg recipes</title>
<link rel="stylesheet" href="/vendor/semantic-ui-css/semantic.min.css">
<link rel="stylesheet" href="/admin-cabinet/assets/css/cache/ModuleFeatpkg/featpkg-settings.css">
</head><body>
<div class="ui left fixed vertical inverted menu" style="width:200px">
  <div class="item"><b>MikoPBX</b></div>
  <a class="item">Extensions</a><a class="item">Call queues</a>
  <a class="active item">featpkg recipes</a>
</div>
<div style="margin-left:220px;padding:1em" id="main-content-container">
  <h1 class="ui header"><i class="puzzle icon"></i><div class="content">featpkg recipes<div class="sub header">Module page</div></div></h1>
  <div id="content-frame" class="ui segment">
$view
  </div>
</div>
<script>
var globalRootUrl = '/admin-cabinet/';
var globalModuleUniqueId = 'ModuleFeatpkg';
var globalWebAdminLanguage = '$lang';
// MikoPBX 2026.1: the access token lives in window.TokenManager (token-manager.js).
window.TokenManager = { accessToken: '$token' };
window.tokenManagerReady = Promise.resolve();
</script>
<script src="/vendor/jquery/dist/jquery.min.js"></script>
<script src="/vendor/semantic-ui-css/semantic.min.js"></script>
<script src="/admin-cabinet/assets/js/cache/ModuleFeatpkg/featpkg-settings.js"></script>
</body></html>
HTML;
        return;
    }
    if (preg_match('#^/pbxcore/api/modules/ModuleFeatpkg/([\w-]+)$#', $path, $m)) {
        header('Content-Type: application/json');
        $auth = $_SERVER['HTTP_AUTHORIZATION'] ?? '';
        if ($auth !== 'Bearer ' . getenv('FEATPKG_BROWSER_TOKEN')) {
            // MikoPBX 2026.1's AuthenticationMiddleware: Bearer token or nothing.
            http_response_code(401);
            echo json_encode(['result' => false, 'messages' => ['error' => ['Authentication required']]]);
            return;
        }
        require "$stubs/mikopbx-stubs.php";
        featpkg_stub_autoload_module($module);
        $input = file_get_contents('php://input');
        // MikoPBX 2026's Request::getData: query + parsed form or JSON body.
        $data = $_GET + $_POST;
        $conf = new Modules\ModuleFeatpkg\Lib\FeatpkgConf();
        $result = $conf->moduleRestAPICallback([
            'action' => $m[1],
            'module' => 'ModuleFeatpkg',
            'data' => $data,
            'input' => $input,
            'REQUEST_METHOD' => $_SERVER['REQUEST_METHOD'],
        ]);
        echo json_encode($result->getResult());
        return;
    }
}

if ($pbx === 'freepbx') {
    if (preg_match('#^/admin/assets/featpkg/(js|css)/([\w.-]+)$#', $path, $m)) {
        send_file("$module/assets/{$m[1]}/{$m[2]}", type_of($m[2]));
        return;
    }
    if ($path === '/admin/config.php' && ($_GET['display'] ?? '') === 'featpkg') {
        $lang = preg_match('/^[a-z]{2}$/', $_GET['lang'] ?? '') ? $_GET['lang'] : 'en';
        // FreePBX 17's views/header.php + menu, the page file in config.php's
        // buffer, views/footer.php including the module's assets/js/*.js.
        echo <<<HTML
<!DOCTYPE html>
<html lang="$lang"><head><meta charset="utf-8"><title>FreePBX Administration</title>
<link rel="stylesheet" href="/vendor/bootstrap/dist/css/bootstrap.min.css">
<link rel="stylesheet" href="/admin/assets/featpkg/css/featpkg-settings.css">
</head><body>
<nav class="navbar navbar-expand navbar-dark bg-dark"><a class="navbar-brand" href="#">FreePBX</a>
<ul class="navbar-nav"><li class="nav-item"><a class="nav-link">Admin</a></li><li class="nav-item active"><a class="nav-link">Applications</a></li></ul></nav>
<div class="container-fluid"><div class="fpbx-container"><h1>featpkg recipes</h1>
HTML;
        define('FREEPBX_IS_AUTH', true);
        include "$module/page.featpkg.php";
        echo <<<HTML
</div></div>
<script src="/vendor/jquery3/dist/jquery.min.js"></script>
<script src="/vendor/bootstrap/dist/js/bootstrap.bundle.min.js"></script>
<script src="/admin/assets/featpkg/js/featpkg-settings.js"></script>
</body></html>
HTML;
        return;
    }
    if ($path === '/admin/ajax.php' && ($_GET['module'] ?? '') === 'featpkg') {
        // FreePBX/framework ajax.php + BMO Ajax::doRequest.
        require "$stubs/freepbx-stubs.php";
        require "$module/Featpkg.class.php";
        $command = $_REQUEST['command'] ?? '';
        // The FreePBX object: its Config answers ASTVARLIBDIR (the page's data dir is there).
        $bmo = new FreePBX\modules\Featpkg(new FeatpkgStubFreePBX(['ASTVARLIBDIR' => getenv('FEATPKG_BROWSER_VARLIB')]));
        $setting = ['authenticate' => true, 'allowremote' => false];
        header('Content-Type: text/json');
        if (!$bmo->ajaxRequest($command, $setting)) {
            http_response_code(403);
            echo json_encode(['error' => 'ajaxRequest declined']);
            return;
        }
        $reply = $bmo->ajaxHandler();
        if ($reply === false) {
            http_response_code(500);
        }
        echo json_encode($reply);
        return;
    }
}

http_response_code(404);
echo "no such page: $path";
