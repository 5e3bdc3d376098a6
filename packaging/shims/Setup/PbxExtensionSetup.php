<?php
/*
 * MikoPBX setup class of the featpkg module. Installing the module needs
 * nothing beyond MikoPBX's own steps (the features are installed when the
 * module is enabled, see Lib/FeatpkgConf.php).
 *
 * Uninstalling: MikoPBX's UninstallModuleAction (mikopbx/Core
 * src/PBXCoreREST/Lib/Modules/UninstallModuleAction.php) calls
 * uninstallModule(), which deletes the module directory, and deletes it anyway
 * in a `finally` if that fails. featpkg (inside that directory) must take its
 * changes back out first, so this runs `featpkg uninstall` before the base
 * class removes anything. Normally the module was disabled first and nothing
 * is installed any more: then this does nothing.
 */

namespace Modules\ModuleFeatpkg\Setup;

use MikoPBX\Modules\Setup\PbxExtensionSetupBase;
use Modules\ModuleFeatpkg\Lib\FeatpkgConf;
use Modules\ModuleFeatpkg\Lib\FeatpkgRunner;
use RuntimeException;
use Throwable;

class PbxExtensionSetup extends PbxExtensionSetupBase
{
    public function uninstallModule(bool $keepSettings = false): bool
    {
        $runner = new FeatpkgRunner(dirname(__DIR__));
        try {
            $runner->mikopbxUninstall(false);
        } catch (Throwable $refused) {
            // The directory goes whatever happens here, and with it the programs
            // featpkg's dialplan calls: blocks left behind would fail the calls
            // that reach them. So a refusal (hand edits inside featpkg's blocks)
            // is overridden now, and said.
            try {
                $runner->mikopbxForcedUninstall();
                $warning = 'the module is being deleted, so featpkg removed its blocks although they were edited by hand: ' . $refused->getMessage();
                $this->messages[] = $warning;
                FeatpkgConf::log($warning);
            } catch (Throwable $e) {
                $message = 'featpkg could not take the features back out, so they are still installed: ' . $e->getMessage();
                $this->messages[] = $message;
                FeatpkgConf::log($message);
                throw new RuntimeException($message, 0, $e);
            }
        }
        return parent::uninstallModule($keepSettings);
    }
}
