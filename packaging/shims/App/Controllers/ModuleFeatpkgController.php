<?php
/*
 * MikoPBX admin page of the featpkg module: /admin-cabinet/module-featpkg/module-featpkg/index.
 * Its existence (with indexAction) puts the module in MikoPBX's sidebar; the
 * view is App/Views/ModuleFeatpkg/index.volt, which `featpkg build` makes from
 * ui-assets/settings.html (data-pbx="mikopbx"). The page's script talks to
 * Lib/FeatpkgConf.php::moduleRestAPICallback (/pbxcore/api/modules/ModuleFeatpkg/<action>);
 * nothing is saved through this controller.
 */

namespace Modules\ModuleFeatpkg\App\Controllers;

use MikoPBX\AdminCabinet\Controllers\BaseController;

class ModuleFeatpkgController extends BaseController
{
    /**
     * The settings page: its style and script from the module's public/assets,
     * which MikoPBX links to sites/admin-cabinet/assets/{css,js}/cache/ModuleFeatpkg.
     */
    public function indexAction(): void
    {
        $this->assets->collection(self::collectionName('HEADER_CSS', 'headerCSS'))
            ->addCss('css/cache/ModuleFeatpkg/featpkg-settings.css', true);
        $this->assets->collection(self::collectionName('FOOTER_JS', 'footerJS'))
            ->addJs('js/cache/ModuleFeatpkg/featpkg-settings.js', true);
    }

    /** AssetProvider's collection name (older releases: the literal name). */
    private static function collectionName(string $constant, string $literal): string
    {
        $name = 'MikoPBX\\AdminCabinet\\Providers\\AssetProvider::' . $constant;
        return defined($name) ? (string) constant($name) : $literal;
    }
}
