<?php
/*
 * MikoPBX hook class of the featpkg module (class name: the module id without
 * "Module", plus "Conf"). Enabling the module installs the bundle's features
 * with the bundled featpkg; disabling takes them back out.
 *
 * Why these hooks (mikopbx/Core src/Modules/PbxExtensionState.php):
 * - onBeforeModuleEnable/onBeforeModuleDisable are called first inside the
 *   enable/disable check (makeBeforeEnableTest / makeBeforeDisableTest). There,
 *   returning false refuses the enable/disable and MikoPBX shows getMessages()
 *   to the admin. The check runs in an open transaction on the main database
 *   (the enable check has already saved the module row in it), so writing the
 *   configuration from there could wait on MikoPBX's own lock: these hooks run
 *   featpkg with --dry-run, which checks everything (parameters, collisions,
 *   the restart rule) and writes nothing. Both are called a second time after
 *   the check; a second dry run is harmless.
 * - onAfterModuleEnable/onAfterModuleDisable do the real work. A failure is
 *   logged with MikoPBX's logger and thrown: current MikoPBX turns the exception
 *   into the enable/disable result's error message; releases that call these
 *   hooks from WorkerModelsEvents log it. featpkg rolls its own transaction back
 *   on failure, so nothing is left half-installed.
 */

namespace Modules\ModuleFeatpkg\Lib;

use MikoPBX\Core\System\SystemMessages;
use MikoPBX\Modules\Config\ConfigClass;
use RuntimeException;
use Throwable;

class FeatpkgConf extends ConfigClass
{
    /** Checks that featpkg can install the features; refuses the enable (with featpkg's message) otherwise. */
    public function onBeforeModuleEnable(): bool
    {
        try {
            $this->runner()->mikopbxInstall(true);
            return true;
        } catch (Throwable $e) {
            $this->refuse($e);
            return false;
        }
    }

    /** Installs the features. */
    public function onAfterModuleEnable(): void
    {
        try {
            $this->runner()->mikopbxInstall(false);
        } catch (Throwable $e) {
            throw $this->failure($e);
        }
    }

    /** Checks that featpkg can take the features out; refuses the disable (with featpkg's message) otherwise. */
    public function onBeforeModuleDisable(): bool
    {
        try {
            $this->runner()->mikopbxUninstall(true);
            return true;
        } catch (Throwable $e) {
            $this->refuse($e);
            return false;
        }
    }

    /** Uninstalls the features (restoring exactly what featpkg changed). */
    public function onAfterModuleDisable(): void
    {
        try {
            $this->runner()->mikopbxUninstall(false);
        } catch (Throwable $e) {
            throw $this->failure($e);
        }
    }

    private function runner(): FeatpkgRunner
    {
        return new FeatpkgRunner(dirname(__DIR__));
    }

    private function refuse(Throwable $e): void
    {
        $this->messages['error'][] = $e->getMessage();
        self::log($e->getMessage());
    }

    private function failure(Throwable $e): RuntimeException
    {
        $this->messages['error'][] = $e->getMessage();
        self::log($e->getMessage());
        return new RuntimeException($e->getMessage(), 0, $e);
    }

    /** Logs an error the way MikoPBX modules do (syslog through SystemMessages). */
    public static function log(string $message): void
    {
        if (class_exists(SystemMessages::class)) {
            SystemMessages::sysLogMsg('ModuleFeatpkg', $message, LOG_ERR);
        } elseif (is_callable(['MikoPBX\Core\System\Util', 'sysLogMsg'])) {
            call_user_func(['MikoPBX\Core\System\Util', 'sysLogMsg'], 'ModuleFeatpkg', $message, LOG_ERR);
        } else {
            error_log("ModuleFeatpkg: $message");
        }
    }
}
